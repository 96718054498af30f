"""Writes that must survive a crash: a reader finds the old file or the new one, never half."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def json_bytes(data: Any) -> bytes:
    """`data` as indented JSON in UTF-8. A name that is not UTF-8 (text with lone surrogates)
    is written as `\\udcNN` escapes, which JSON reads back as the same text: never an error."""
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    return text.encode("utf-8", "backslashreplace")


def write_json_atomic(path: Path, data: Any, mode: int = 0o644) -> None:
    """Write JSON through a temporary file, fsync, rename, fsync of the folder.

    The temporary file is made anew (`O_EXCL`), never through a link someone left in its
    place. Raises OSError if the disk refuses.
    """
    body = json_bytes(data)
    tmp = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)  # a crash's leftover; unlink removes a link, never its target
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(tmp, flags, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(body)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.replace(tmp, path)
    fsync_dir(path.parent)
