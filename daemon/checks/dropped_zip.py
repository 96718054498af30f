"""Checking a ready-made ZIP someone dropped, before it goes up as it came.

The server flattens entries to their base names and fails the whole upload for any entry
it does not know, so each entry must be a CSV or `message.properties`. Paths that climb
out (`..`, absolute), links, nested archives and bombs are refused here, before anything
reads them further.
"""

from __future__ import annotations

import posixpath
import stat
import zipfile
from pathlib import Path

from daemon.base.names import quoted
from daemon.base.regular import open_regular

MAX_TOTAL_BYTES = 4 << 30  # what the entries may hold uncompressed, together
MAX_RATIO = 200  # more compression than this on an entry over 1 MiB is a bomb's signature
RATIO_FLOOR = 1 << 20
CHUNK = 1 << 20


def zip_problems(path: Path) -> list[str]:
    """Every reason the dropped ZIP at `path` cannot go up; empty when it can."""
    try:
        with open_regular(path) as source, zipfile.ZipFile(source) as archive:
            infos = [i for i in archive.infolist() if not i.is_dir()]
            problems = [p for i in infos for p in _entry_problems(i)]
            if not infos:
                problems.append(
                    "the ZIP holds no file; the server would answer 'No files to process'"
                )
            if not problems:
                problems += _size_problems(archive, infos)
            return problems
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
        return [f"it is not a ZIP the server can unzip ({exc}); zip the CSV files again"]


def duplicate_entries(path: Path) -> str | None:
    """Why a dropped ZIP cannot be taken at all: two entries of one name once the server
    has flattened them to base names (which one it would apply is unknown). None when
    every name is its own, or the ZIP cannot be read (`zip_problems` says why)."""
    try:
        with open_regular(path) as source, zipfile.ZipFile(source) as archive:
            names = [
                posixpath.basename(entry_text(i).replace("\\", "/"))
                for i in archive.infolist()
                if not i.is_dir() and not _macos_junk(i.filename)
            ]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError):
        return None
    twice = sorted({n for n in names if names.count(n) > 1})
    if not twice:
        return None
    listed = ", ".join(quoted(n) for n in twice[:10])
    return (
        f"the ZIP holds two or more entries named {listed} (the server keeps only base "
        "names, so which one it would apply is unknown); zip each file once and drop it again"
    )


def _macos_junk(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    return len(parts) > 1 and parts[-2] == "__MACOSX"


def _entry_problems(info: zipfile.ZipInfo) -> list[str]:
    name, shown = info.filename, entry_text(info)
    if not info.flag_bits & 0x800 and not _utf8(name):
        return [
            f"entry {quoted(shown)} has a name that is not UTF-8, which the server's Java "
            "cannot read; rename the file and zip it again"
        ]
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts:
        why = "has a path that leaves the archive; zip the files without folders"
        return [f"entry {quoted(shown)} {why}"]
    if stat.S_ISLNK(info.external_attr >> 16):
        return [f"entry {quoted(shown)} is a symbolic link; zip the file itself"]
    if info.flag_bits & 0x1:
        return [f"entry {quoted(shown)} is encrypted; the server cannot read it"]
    base = posixpath.basename(name.replace("\\", "/"))
    if not (base.lower().endswith(".csv") or base.lower() == "message.properties"):
        return [
            f"entry {quoted(shown)} is not a CSV file or message.properties; the server fails "
            "the whole upload for it, so leave it out of the ZIP"
        ]
    return []


def entry_text(info: zipfile.ZipInfo) -> str:
    """An entry's name as the file system would hold it: zipfile reads a name without the
    UTF-8 flag as code page 437 (0xE9 becomes "Θ"); its bytes again, with those that are not
    UTF-8 kept as `quoted` shows them (`\\xe9`)."""
    if info.flag_bits & 0x800:
        return info.filename
    try:
        return info.filename.encode("cp437").decode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return info.filename


def _utf8(name: str) -> bool:
    # zipfile reads a name without the UTF-8 flag as code page 437; Java reads it as UTF-8.
    try:
        name.encode("cp437").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return False
    return True


def _size_problems(archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo]) -> list[str]:
    declared = sum(i.file_size for i in infos)
    if declared > MAX_TOTAL_BYTES:
        return [
            f"its entries would unpack to {declared:,} bytes, more than the "
            f"{MAX_TOTAL_BYTES:,} dropd accepts; send the files themselves"
        ]
    for info in infos:
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > RATIO_FLOOR and ratio > MAX_RATIO:
            return [
                f"entry {quoted(entry_text(info))} compresses {ratio:,.0f} to 1, which only a ZIP "
                "bomb does; send the files themselves"
            ]
    # Declared sizes can lie: count what really comes out, and stop past the declaration.
    for info in infos:
        if _unpacked_size(archive, info) > info.file_size:
            return [
                f"entry {quoted(entry_text(info))} unpacks to more than its declared "
                f"{info.file_size:,} bytes; the ZIP is damaged or hostile"
            ]
    return []


def _unpacked_size(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> int:
    total = 0
    with archive.open(info) as entry:
        while chunk := entry.read(CHUNK):
            total += len(chunk)
            if total > info.file_size:
                break
    return total
