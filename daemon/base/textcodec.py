"""A group's `encoding` as Python's codecs know it.

The checks read dropped files in it and the ZIP's copy is written from it as UTF-8; both
need to know whether it is UTF-8 itself (then the bytes go up as they are), and whether it
reads ASCII bytes as themselves (then a file of ASCII bytes is the same in UTF-8).
"""

from __future__ import annotations

import codecs
import functools

__all__ = ["UTF8", "is_utf8", "keeps_ascii"]

UTF8 = "utf-8"
_ASCII = bytes(range(128))


@functools.cache
def is_utf8(codec: str) -> bool:
    """True where `codec` is a name of UTF-8 ("utf-8", "UTF8", "utf_8"), not "utf-8-sig".

    Raises LookupError for a name Python does not know.
    """
    return codecs.lookup(codec).name == UTF8


@functools.cache
def keeps_ascii(codec: str) -> bool:
    """True where `codec` reads each ASCII byte as that character (cp1252, latin-1, UTF-8),
    unlike UTF-16 or EBCDIC.

    Raises LookupError for a name Python does not know.
    """
    try:
        return codecs.decode(_ASCII, codec) == _ASCII.decode("ascii")
    except UnicodeDecodeError:
        return False
