"""A ready-made ZIP someone dropped: which of its entries are taken, and unpacking them.

The server flattens entries to their base names and fails the whole upload for any entry
it does not know, so each entry taken must be a CSV or `message.properties`; macOS's own
files (`__MACOSX/`, `._*`, `.DS_Store`) are left out. Paths that climb out (`..`), links,
encrypted entries and bombs are refused before a byte is unpacked, and the bytes written
are counted against what each entry declares. What is taken is unpacked by base name into a
folder, to be checked and zipped again exactly as loose files are: what goes up is never
the dropped ZIP itself, which a Java `ZipInputStream` may not read as Python does.
"""

from __future__ import annotations

import os
import posixpath
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from daemon.base.errors import SpoolError, os_reason
from daemon.base.names import quoted
from daemon.base.regular import open_regular

MAX_TOTAL_BYTES = 4 << 30  # what the entries may hold uncompressed, together
MAX_RATIO = 200  # more compression than this on an entry over 1 MiB is a bomb's signature
RATIO_FLOOR = 1 << 20
MAX_ENTRIES = 1000  # a SIS export is a handful of files; thousands are no upload
MAX_NAME_BYTES = 255  # the longest file name Linux file systems hold
CHUNK = 1 << 20
_JUNK_NAMES = (".DS_Store",)
_JUNK_FOLDER = "__MACOSX"


@dataclass(frozen=True, slots=True)
class TakenEntry:
    """An entry unpacked: its path in the ZIP, the base name it became, its bytes."""

    path: str
    name: str
    bytes: int


@dataclass(frozen=True, slots=True)
class Unpacking:
    """What became of a dropped ZIP: the entries taken (unpacked, when nothing is wrong),
    macOS's files left out, and why it cannot go up, if it cannot.

    `twice` fails the batch at intake (which entry the server would apply is unknown);
    `problems` fail it at validate. Either way the folder may hold part of the entries.
    """

    entries: tuple[TakenEntry, ...] = ()
    left_out: tuple[str, ...] = ()
    twice: str | None = None
    problems: tuple[str, ...] = ()


def unpack_zip(path: Path, folder: Path) -> Unpacking:
    """Unpack the entries of the ZIP at `path` that the server would take into `folder` (an
    empty folder of dropd's own), each by its base name, once every bound holds.

    Raises SpoolError if `folder` cannot be written.
    """
    try:
        with open_regular(path) as source, zipfile.ZipFile(source) as archive:
            infos = [i for i in archive.infolist() if not i.is_dir()]
            left_out = tuple(entry_text(i) for i in infos if is_macos_junk(entry_text(i)))
            taken = [i for i in infos if not is_macos_junk(entry_text(i))]
            problems = _listing_problems(infos, taken)
            if problems:
                return Unpacking(left_out=left_out, problems=tuple(problems))
            twice = _duplicates(taken)
            if twice is not None:
                return Unpacking(left_out=left_out, twice=twice)
            entries, problems = _write_all(archive, taken, folder)
            return Unpacking(entries, left_out, None, tuple(problems))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, zlib.error) as exc:
        why = f"it is not a ZIP the server can unzip ({exc}); zip the CSV files again"
        return Unpacking(problems=(why,))


def base_name(path: str) -> str:
    """The name the server gives an entry: its last part (a Windows tool's `\\` counts as `/`)."""
    return posixpath.basename(path.replace("\\", "/"))


def is_macos_junk(path: str) -> bool:
    """True for what macOS's "Compress" adds beside the files: `__MACOSX/...` (resource
    forks), `._NAME` (AppleDouble) and `.DS_Store`; never the user's data."""
    parts = path.replace("\\", "/").split("/")
    return _JUNK_FOLDER in parts[:-1] or parts[-1].startswith("._") or parts[-1] in _JUNK_NAMES


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


def _duplicates(taken: list[zipfile.ZipInfo]) -> str | None:
    paths: dict[str, list[str]] = {}
    for info in taken:
        paths.setdefault(base_name(entry_text(info)), []).append(entry_text(info))
    twice = sorted(name for name, found in paths.items() if len(found) > 1)
    if not twice:
        return None
    listed = ", ".join(quoted(n) for n in twice[:10])
    entries = "; ".join(", ".join(quoted(p) for p in paths[n]) for n in twice[:10])
    return (
        f"the ZIP holds two or more entries named {listed} ({entries}; the server keeps only "
        "base names, so which one it would apply is unknown); zip each file once and drop it "
        "again"
    )


def _listing_problems(infos: list[zipfile.ZipInfo], taken: list[zipfile.ZipInfo]) -> list[str]:
    # What the central directory tells, before anything is unpacked.
    if len(infos) > MAX_ENTRIES:
        return [
            f"the ZIP holds {len(infos):,} entries, more than the {MAX_ENTRIES:,} dropd "
            "unpacks; zip only the CSV files and message.properties"
        ]
    problems = [p for i in taken for p in _entry_problems(i)]
    if not taken:
        problems.append("the ZIP holds no file; the server would answer 'No files to process'")
    return problems or _size_problems(taken)


def _entry_problems(info: zipfile.ZipInfo) -> list[str]:
    name, shown = info.filename, entry_text(info)
    if not info.flag_bits & 0x800 and not _utf8(name):
        return [
            f"entry {quoted(shown)} has a name that is not UTF-8, which the server's Java "
            "cannot read; rename the file and zip it again"
        ]
    if ".." in name.replace("\\", "/").split("/"):
        why = "has a path that leaves the archive; zip the files without folders"
        return [f"entry {quoted(shown)} {why}"]
    if stat.S_ISLNK(info.external_attr >> 16):
        return [f"entry {quoted(shown)} is a symbolic link; zip the file itself"]
    if info.flag_bits & 0x1:
        return [f"entry {quoted(shown)} is encrypted; the server cannot read it"]
    base = base_name(shown)
    if not (base.lower().endswith(".csv") or base.lower() == "message.properties"):
        return [
            f"entry {quoted(shown)} is not a CSV file or message.properties; the server fails "
            "the whole upload for it, so leave it out of the ZIP"
        ]
    if len(os.fsencode(base)) > MAX_NAME_BYTES:
        return [f"entry {quoted(shown)} has a name too long for a file; rename it"]
    return []


def _utf8(name: str) -> bool:
    # zipfile reads a name without the UTF-8 flag as code page 437; Java reads it as UTF-8.
    try:
        name.encode("cp437").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return False
    return True


def _size_problems(infos: list[zipfile.ZipInfo]) -> list[str]:
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
    return []


def _write_all(
    archive: zipfile.ZipFile, taken: list[zipfile.ZipInfo], folder: Path
) -> tuple[tuple[TakenEntry, ...], list[str]]:
    # The entries unpacked, or none and why one cannot be.
    entries: list[TakenEntry] = []
    for info in taken:
        shown = entry_text(info)
        target = folder / base_name(shown)
        try:
            written = _write(archive, info, target)
        except (NotImplementedError, RuntimeError) as exc:  # a method zipfile lacks
            return (), [f"entry {quoted(shown)} cannot be unpacked ({exc}); zip it again"]
        if written > info.file_size:
            return (), [
                f"entry {quoted(shown)} unpacks to more than its declared "
                f"{info.file_size:,} bytes; the ZIP is damaged or hostile"
            ]
        entries.append(TakenEntry(shown, target.name, written))
    return tuple(entries), []


def _write(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path) -> int:
    """Unpack one entry to `target`; the bytes written, stopping past its declared size (a
    declared size can lie)."""
    total = 0
    with archive.open(info) as entry:
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise SpoolError(target, os_reason(exc)) from exc
        with open(fd, "wb") as out:
            while chunk := entry.read(CHUNK):
                total += len(chunk)
                if total > info.file_size:
                    break
                try:
                    out.write(chunk)
                except OSError as exc:
                    raise SpoolError(target, os_reason(exc)) from exc
    return total
