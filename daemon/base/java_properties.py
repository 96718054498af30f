"""Reading a Java properties file as `java.util.Properties.load` reads it.

Logical lines (a backslash at the end continues a line), `#` and `!` comments, keys ended
by `=`, `:` or whitespace, and the escapes `\\t \\r \\n \\f \\uXXXX`.
"""

from __future__ import annotations

import re


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
