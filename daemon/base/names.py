"""File names as the kernel allows them: any bytes but `/` and NUL.

Python hands a name that is not UTF-8 over as text with each undecodable byte as a lone
surrogate (`caf\\udce9.csv` for the bytes `caf\\xe9.csv`). Such text cannot be written as
UTF-8, so a name is shown to people with those bytes escaped (`caf\\xe9.csv`), kept in a
record losslessly as that text plus the name's bytes in hex where it is not UTF-8, quoted in
every sentence so that spaces and control characters can be seen, and given a ZIP entry
name that the server's Java can read.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterable

QUOTE_LIMIT = 200  # characters of a quoted value; the rest is cut
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", '"': '\\"', "\\": "\\\\"}
# Characters a reader cannot see or that move the text: controls, format characters (such
# as right-to-left overrides), line and paragraph separators, and spaces other than " ".
_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def is_plain(name: str) -> bool:
    """True when `name` is valid UTF-8 as it is on disk (no undecodable byte)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown(name: str) -> str:
    """`name` as text a person can read: each byte that is not UTF-8 as `\\xNN`."""
    if is_plain(name):
        return name
    try:
        return os.fsencode(name).decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate no file name holds: escape it as text
        return name.encode("utf-8", "backslashreplace").decode("utf-8")


def name_fields(name: str) -> dict[str, str]:
    """How a record keeps a name: `name` as shown, plus `name_hex` (its bytes) when the name
    is not UTF-8, since only the bytes then say exactly which file it was."""
    if is_plain(name):
        return {"name": name}
    return {"name": shown(name), "name_hex": os.fsencode(name).hex()}


def quoted(value: str, limit: int = QUOTE_LIMIT) -> str:
    """`value` in double quotes for a sentence: undecodable bytes as `\\xNN`, hidden
    characters escaped, cut to `limit` characters."""
    out: list[str] = []
    for char in value[:limit]:
        if "\udc80" <= char <= "\udcff":  # a byte that is not UTF-8
            out.append(f"\\x{ord(char) - 0xDC00:02x}")
        elif char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif unicodedata.category(char) in _HIDDEN or (char.isspace() and char != " "):
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    cut = f"… ({len(value) - limit:,} more characters)" if len(value) > limit else ""
    return '"' + "".join(out) + '"' + cut


def entry_name(name: str, taken: Iterable[str] = ()) -> str:
    """The name a file takes in the ZIP that goes up: the server reads entry names as UTF-8,
    so a byte that is not UTF-8 becomes `%NN`; a name made that way that another entry
    already bears gets `~2`, `~3`, … before its extension."""
    if is_plain(name):
        return name
    text = "".join(
        f"%{ord(char) - 0xDC00:02X}" if "\udc80" <= char <= "\udcff" else char for char in name
    )
    used = set(taken)
    stem, dot, extension = text.rpartition(".")
    if not dot:
        stem, extension = text, ""
    candidate, number = text, 1
    while candidate in used:
        number += 1
        candidate = f"{stem}~{number}{dot}{extension}"
    return candidate
