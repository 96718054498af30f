"""A group's `encoding` as the checks read its files with it, and how they word a file
that does not read in it.

A file is read in the group's encoding (the copy that goes up is then UTF-8): a byte it
cannot read fails the batch at step validate, naming the line and the setting to change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from daemon.base.textcodec import UTF8, is_utf8, keeps_ascii
from daemon.config.toml import join_key

__all__ = ["UTF8_FILES", "Decoding"]


class _Group(Protocol):
    """A group's settings (`config.model.Group`), as far as the checks need them: its key
    and its encoding."""

    @property
    def key(self) -> str: ...
    @property
    def encoding(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Decoding:
    """The encoding a group's files are read in, and the key that sets it."""

    codec: str = UTF8  # as the config gives it: "utf-8", "cp1252"
    setting: str = "encoding"  # its key path, for messages: groups.music.encoding

    @classmethod
    def of(cls, group: _Group) -> Decoding:
        """The encoding of `group`'s files."""
        return cls(group.encoding, join_key(join_key("groups", group.key), "encoding"))

    @property
    def utf8(self) -> bool:
        """True where the files are read as UTF-8 (and go up as they are)."""
        return is_utf8(self.codec)

    @property
    def keeps_ascii(self) -> bool:
        """True where ASCII bytes read as themselves (not UTF-16): a line ends at b"\\n"."""
        return keeps_ascii(self.codec)

    def unreadable(self, line: int, byte: int, before: str) -> str:
        """Why line `line` does not read: its byte `byte`, after the text `before` on it."""
        after = f' after "{before}"' if before.strip() else ""
        if self.utf8:
            return (
                f"line {line} is not valid UTF-8 (byte 0x{byte:02X}{after}); save the file as "
                f'UTF-8 (in Excel: "CSV UTF-8"), or set {self.setting} to the file\'s encoding, '
                'such as "cp1252"'
            )
        return (
            f"line {line} is not valid {self.codec} (byte 0x{byte:02X}{after}); save the file "
            f"in {self.codec}, or set {self.setting} to the file's encoding"
        )

    def utf16(self) -> str:
        """Why a UTF-16 file (by its byte-order mark) does not read in this encoding."""
        save = 'as UTF-8 (in Excel: "CSV UTF-8")' if self.utf8 else f"in {self.codec}"
        return f'the file is UTF-16; save it {save}, or set {self.setting} to "utf-16"'


UTF8_FILES = Decoding()  # the default `encoding`: files in UTF-8
