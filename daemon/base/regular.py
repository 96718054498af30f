"""Opening a dropped file: only a regular file, never through a link, FIFO or device.

Kept in `base`, apart from `archive`, because the checks, the spool and the upload read
dropped files too, and those layers do not import each other.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import stat
from pathlib import Path

_CHUNK = 1 << 20  # reads of a whole file, to hash it
BOM = b"\xef\xbb\xbf"  # UTF-8's byte-order mark, which Excel writes and the server misreads


def open_regular(path: Path) -> io.BufferedReader:
    """Open a dropped file to read, never through a link, FIFO, socket or device.

    Raises OSError if `path` is a link (ELOOP) or not a regular file (EINVAL).
    """
    # O_NONBLOCK: opening a FIFO must not wait for a writer; the type check then refuses it.
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def file_sha256(path: Path) -> str:
    """The SHA-256 of a dropped file, read in chunks through `open_regular`.

    Raises OSError as `open_regular` does.
    """
    digest = hashlib.sha256()
    with open_regular(path) as source:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
