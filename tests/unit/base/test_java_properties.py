"""Tests of reading Java properties as `Properties.load` does, and of writing text that
reads back as written (daemon/base/java_properties.py)."""

from __future__ import annotations

import pytest

from daemon.base.java_properties import UnicodeEscaper, read_properties


def escaped(*chunks: str) -> tuple[str, int]:
    escaper = UnicodeEscaper()
    text = "".join(escaper.feed(chunk) for chunk in chunks) + escaper.finish()
    return text, escaper.count


def test_unicode_escaper_writes_each_character_beyond_ascii_as_an_escape() -> None:
    assert escaped("body=Café ☃ naïve\n") == ("body=Caf\\u00e9 \\u2603 na\\u00efve\n", 3)


def test_unicode_escaper_writes_a_character_beyond_the_bmp_as_two_halves() -> None:
    assert escaped("x=🎵") == ("x=\\ud83c\\udfb5", 1)


def test_unicode_escaper_leaves_ascii_as_it_is() -> None:
    text = "# comment\nsender=a@b.edu\nbody=line \\\n  two \\u00e9 \\\\ done\n"
    assert escaped(text) == (text, 0)


@pytest.mark.parametrize(
    ("written", "read"),
    [
        ("body=\\é", "é"),  # Java drops the backslash that escapes a character
        ("body=\\\\é", "\\é"),  # an escaped backslash, then the character
        ("body=\\\\\\é", "\\é"),
    ],
)
def test_unicode_escaper_keeps_what_a_backslash_before_a_character_means(
    written: str, read: str
) -> None:
    for cut in range(len(written) + 1):
        text, _ = escaped(written[:cut], written[cut:])
        assert text.isascii()
        assert read_properties(text.encode("ascii")) == {"body": read}


def test_unicode_escaped_text_reads_back_as_written() -> None:
    written = "sender=école@example.edu\nsubject=Grüße\nbody=Renée ☃ 日本\n"
    text, count = escaped(*[written[i : i + 3] for i in range(0, len(written), 3)])
    assert count == 7
    assert read_properties(text.encode("ascii")) == {
        "sender": "école@example.edu",
        "subject": "Grüße",
        "body": "Renée ☃ 日本",
    }
