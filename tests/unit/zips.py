"""ZIP files for tests, written as a tool would: by zipfile, to a file or to a stream."""

from __future__ import annotations

import io
import zipfile


class _Unseekable(io.RawIOBase):
    """A stream zipfile cannot seek back in: it writes a data descriptor after each entry."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.data += data
        return len(data)


def zip_of(
    files: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED, *, seekable: bool = True
) -> bytes:
    """A ZIP of `files`; not `seekable`: sizes come after each entry's data, as a tool
    writing to a pipe leaves them (with a stored entry, Java's ZipInputStream cannot read it)."""
    target: io.BytesIO | _Unseekable = io.BytesIO() if seekable else _Unseekable()
    with zipfile.ZipFile(target, "w", compression=method) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return bytes(target.getvalue() if isinstance(target, io.BytesIO) else target.data)
