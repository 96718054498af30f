"""File names as the kernel allows them (daemon/names.py): shown, kept, quoted, zipped."""

from __future__ import annotations

import json
import os

import pytest

from daemon.base.names import entry_name, is_plain, name_fields, quoted, shown

CAFE = os.fsdecode(b"caf\xe9.csv")  # the bytes of a Windows-1252 name, as Python hands them over


def test_a_utf8_name_is_plain_and_kept_as_it_is() -> None:
    for name in ("users.csv", "ユーザー一覧.csv", "a b\tc.csv"):
        assert is_plain(name) and shown(name) == name
        assert name_fields(name) == {"name": name}


def test_a_name_that_is_not_utf8_is_shown_with_its_bytes_and_kept_with_them_in_hex() -> None:
    assert not is_plain(CAFE)
    assert shown(CAFE) == "caf\\xe9.csv"
    fields = name_fields(CAFE)
    assert fields == {"name": "caf\\xe9.csv", "name_hex": "636166e92e637376"}
    assert os.fsdecode(bytes.fromhex(fields["name_hex"])) == CAFE, "lossless"
    json.dumps(fields, ensure_ascii=False).encode("utf-8")  # valid UTF-8 in a record


@pytest.mark.parametrize(
    ("name", "quote"),
    [
        ("users.csv ", '"users.csv "'),
        ("bell\x07.txt", '"bell\\u0007.txt"'),
        ("line\nbreak.csv", '"line\\nbreak.csv"'),
        ("x\u202ecsv.txt", '"x\\u202ecsv.txt"'),
        ('say "hi".csv', '"say \\"hi\\".csv"'),
        ("back\\slash.csv", '"back\\\\slash.csv"'),
        ("no\u00a0break.csv", '"no\\u00a0break.csv"'),
        (CAFE, '"caf\\xe9.csv"'),
        ("Renée.csv", '"Renée.csv"'),
    ],
)
def test_quoted_shows_what_a_reader_could_not_see(name: str, quote: str) -> None:
    assert quoted(name) == quote


def test_quoted_cuts_a_long_value_and_says_how_much() -> None:
    said = quoted("h," * 100_000)
    assert said.startswith('"h,h,') and said.endswith("(199,800 more characters)")
    assert len(said) < 260


def test_entry_name_is_utf8_and_unique_in_its_batch() -> None:
    assert entry_name("users.csv") == "users.csv"
    assert entry_name(CAFE) == "caf%E9.csv"
    assert entry_name(os.fsdecode(b"\xff\xfe.csv")) == "%FF%FE.csv"
    assert entry_name(CAFE, {"caf%E9.csv"}) == "caf%E9~2.csv"
    assert entry_name(CAFE, {"caf%E9.csv", "caf%E9~2.csv"}) == "caf%E9~3.csv"
    assert entry_name(os.fsdecode(b"README\xe9"), {"README%E9"}) == "README%E9~2"
    for name in (CAFE, os.fsdecode(b"\xff\xfe.csv")):
        entry_name(name).encode("utf-8")  # what the server's Java reads
