"""Reading a Java properties file as `java.util.Properties.load` reads it, and writing
text so that it reads back as written.

Logical lines (a backslash at the end continues a line), `#` and `!` comments, keys ended
by `=`, `:` or whitespace, and the escapes `\\t \\r \\n \\f \\uXXXX`. `Properties.load`
reads bytes as ISO-8859-1, so UTF-8 text reaches Java garbled (`é` as `Ã©`) unless each
character beyond ASCII is written as a `\\uXXXX` escape (`UnicodeEscaper`).
"""

from __future__ import annotations

import re

__all__ = ["UnicodeEscaper", "read_properties"]

# A character beyond ASCII, and the backslashes right before it.
_BEYOND_ASCII = re.compile(r"(\\*)([^\x00-\x7f])")


def _logical_lines(text: str) -> list[str]:
    natural = re.split(r"\r\n|\r|\n", text)
    lines, index = [], 0
    while index < len(natural):
        line = natural[index].lstrip(" \t\f")
        index += 1
        if not line or line[0] in "#!":
            continue
        while _continues(line) and index < len(natural):
            line = line[:-1] + natural[index].lstrip(" \t\f")
            index += 1
        lines.append(line[:-1] if _continues(line) else line)
    return lines


def _continues(line: str) -> bool:
    trailing = len(line) - len(line.rstrip("\\"))
    return trailing % 2 == 1


def _split_key_value(line: str) -> tuple[str, str]:
    index, escaped = 0, False
    while index < len(line):
        char = line[index]
        if not escaped and char in "=: \t\f":
            break
        escaped = not escaped and char == "\\"
        index += 1
    rest = line[index:].lstrip(" \t\f")
    if rest[:1] in ("=", ":") and rest:
        rest = rest[1:].lstrip(" \t\f")
    return line[:index], rest


def _unescape(text: str) -> str:
    out, index = [], 0
    while index < len(text):
        char, index = text[index], index + 1
        if char != "\\" or index >= len(text):
            out.append(char)
            continue
        char, index = text[index], index + 1
        if char == "u":
            digits = text[index : index + 4]
            if not re.fullmatch(r"[0-9a-fA-F]{4}", digits):
                raise ValueError("Malformed \\uxxxx encoding.")
            out.append(chr(int(digits, 16)))
            index += 4
        else:
            out.append({"t": "\t", "r": "\r", "n": "\n", "f": "\f"}.get(char, char))
    return "".join(out)


def read_properties(data: bytes) -> dict[str, str]:
    """Read a Java properties file as `Properties.load` does, keys lowercased like the server.

    Raises ValueError on a malformed \\uXXXX escape, as Java does.
    """
    properties = {}
    for line in _logical_lines(data.decode("latin-1")):
        key, value = _split_key_value(line)
        properties[_unescape(key).lower()] = _unescape(value)
    return properties


class UnicodeEscaper:
    """Properties text, in chunks of any size, with each character beyond ASCII written as
    Java's `\\uXXXX` escape (one above U+FFFF as its two UTF-16 halves, as Java holds it).

    The result is ASCII, which `Properties.load` reads as the text it was written as. A
    backslash before such a character escapes it for Java (`\\é` is `é`), so it is taken
    into the escape rather than left to escape the escape.
    """

    def __init__(self) -> None:
        self.count = 0  # characters escaped
        self._held = ""  # backslashes at the end of the last chunk

    def feed(self, text: str) -> str:
        """`text` escaped; backslashes at its very end wait for the next chunk."""
        text = self._held + text
        ended = len(text.rstrip("\\"))
        text, self._held = text[:ended], text[ended:]
        if text.isascii():
            return text
        escaped, count = _BEYOND_ASCII.subn(_escape, text)
        self.count += count
        return escaped

    def finish(self) -> str:
        """What `feed` held back."""
        held, self._held = self._held, ""
        return held


def _escape(match: re.Match[str]) -> str:
    slashes, char = match.group(1), match.group(2)
    if len(slashes) % 2:  # the last backslash escapes the character itself: Java drops it
        slashes = slashes[:-1]
    encoded = char.encode("utf-16-be")
    units = [int.from_bytes(encoded[i : i + 2], "big") for i in range(0, len(encoded), 2)]
    return slashes + "".join(f"\\u{unit:04x}" for unit in units)
