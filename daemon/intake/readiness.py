"""Which dropped files are ready: file types, temporary names, `.done` markers, settle time."""

from __future__ import annotations

import enum
import errno
import grp
import os
import pwd
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from daemon.base.names import quoted
from daemon.config.model import DoneMarkers

MARKER_SUFFIX = ".done"
NEVER = float("-inf")
# Names that writers use while a file is still on its way: never taken.
_TEMPORARY_SUFFIXES = (".tmp", ".part", ".partial", ".filepart", ".crdownload", ".swp")


class FileKind(enum.Enum):
    CSV = "csv"
    PROPERTIES = "properties"  # message.properties, the custom notification
    ZIP = "zip"  # a ready-made upload, sent as its own batch
    MARKER = "marker"  # NAME.done / STEM.done, travels with its file, never uploaded
    OTHER = "other"  # fails on its own at step intake


@dataclass(frozen=True, slots=True)
class FileSeen:
    """One regular file in a drop folder as a scan saw it."""

    name: str
    size: int
    mtime_ns: int
    kind: FileKind
    inode: int = 0


@dataclass(frozen=True, slots=True)
class ReadyFile:
    """A complete file, with the markers that travel with it."""

    name: str
    size: int
    mtime_ns: int
    kind: FileKind
    markers: tuple[str, ...] = ()
    inode: int = 0  # 0: not known (the claim then checks size and mtime only)


def is_temporary(name: str) -> bool:
    """True for names writers use while a file is incomplete, and hidden files."""
    lowered = name.lower()
    return name.startswith((".", "~")) or lowered.endswith(_TEMPORARY_SUFFIXES)


def classify(name: str) -> FileKind | None:
    """The kind of a dropped file by its name; None for names never taken."""
    if is_temporary(name):
        return None
    lowered = name.lower()
    if lowered.endswith(MARKER_SUFFIX):
        return FileKind.MARKER
    if lowered.endswith(".csv"):
        return FileKind.CSV
    if lowered == "message.properties":  # the server finds it by name in any case
        return FileKind.PROPERTIES
    if lowered.endswith(".zip"):
        return FileKind.ZIP
    return FileKind.OTHER


def scan_folder(folder: Path | int) -> list[FileSeen]:
    """List the regular files directly in `folder` (a path, or a folder's descriptor); links,
    FIFOs, devices, folders are skipped.

    Raises OSError if the folder cannot be listed (gone, unmounted, no permission).
    """
    seen: list[FileSeen] = []
    with os.scandir(folder) as entries:
        for entry in entries:
            kind = classify(entry.name)
            # The entry's type comes with the listing: sent/, failed/ cost no stat.
            if kind is None or not entry.is_file(follow_symlinks=False):
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # vanished between listing and stat: the next pass decides
            if stat.S_ISREG(info.st_mode):
                seen.append(FileSeen(entry.name, info.st_size, info.st_mtime_ns, kind, info.st_ino))
    return seen


def _marker_keys(name: str) -> set[str]:
    # Matched without regard to case, as `classify` recognises `users.csv.DONE` as a marker.
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return {(name + MARKER_SUFFIX).lower(), (stem + MARKER_SUFFIX).lower()}


def markers_for(name: str, marker_names: Iterable[str]) -> tuple[str, ...]:
    """The markers present for `name`: `NAME.done` and `STEM.done`."""
    wanted = _marker_keys(name)
    return tuple(sorted(m for m in marker_names if m.lower() in wanted))


def index_markers(marker_names: Iterable[str]) -> dict[str, list[str]]:
    """Marker names by their lower-case form, for `markers_in`."""
    index: dict[str, list[str]] = {}
    for marker in marker_names:
        index.setdefault(marker.lower(), []).append(marker)
    return index


def markers_in(name: str, index: dict[str, list[str]]) -> tuple[str, ...]:
    """`markers_for` against an index: two look-ups, however many markers the folder holds."""
    return tuple(sorted(m for key in _marker_keys(name) for m in index.get(key, ())))


@dataclass(slots=True)
class _Watched:
    size: int
    mtime_ns: int
    unchanged_since: float


class SettleTracker:
    """Remembers each file's size and mtime, and since when neither has changed."""

    def __init__(self) -> None:
        self._files: dict[str, _Watched] = {}

    def observe(self, seen: Iterable[FileSeen], now: float) -> None:
        """Record a scan: changed or new files start their settle time again at `now`."""
        current: dict[str, _Watched] = {}
        for item in seen:
            before = self._files.get(item.name)
            if before and (before.size, before.mtime_ns) == (item.size, item.mtime_ns):
                current[item.name] = before
            else:
                current[item.name] = _Watched(item.size, item.mtime_ns, now)
        self._files = current

    def forget(self, name: str) -> None:
        """Stop watching a file (it was claimed)."""
        self._files.pop(name, None)

    def settled(self, name: str, now: float, settle_seconds: float) -> bool:
        """True once `name` has been unchanged for `settle_seconds`."""
        watched = self._files.get(name)
        return watched is not None and now - watched.unchanged_since >= settle_seconds

    def watched(self) -> int:
        """How many files are being watched (seen, not yet taken)."""
        return len(self._files)

    def next_settle_at(self, settle_seconds: float, after: float = NEVER) -> float | None:
        """When the next watched file will have settled (later than `after`), if any will.

        A file that has settled and waits for its marker needs no timer: its marker's event,
        or the rescan, brings it.
        """
        times = [w.unchanged_since + settle_seconds for w in self._files.values()]
        return min((t for t in times if t > after), default=None)


def ready_files(
    seen: list[FileSeen],
    tracker: SettleTracker,
    now: float,
    settle_seconds: float,
    mode: DoneMarkers,
) -> list[ReadyFile]:
    """The files of a scan that are complete under the group's marker mode.

    A marker counts only when it is at least as new as its file's last change: a marker
    left from an earlier drop says nothing of a file written in place after it, which is
    judged by settle time instead (with `required`, it waits for a new marker). Every
    marker of the file travels with it all the same.
    """
    markers = {f.name: f for f in seen if f.kind is FileKind.MARKER}
    index = index_markers(markers)
    ready: list[ReadyFile] = []
    for item in seen:
        if item.kind is FileKind.MARKER:
            continue
        found = markers_in(item.name, index)
        fresh = any(markers[m].mtime_ns >= item.mtime_ns for m in found)
        if _is_ready(item.name, fresh, tracker, now, settle_seconds, mode):
            ready.append(
                ReadyFile(item.name, item.size, item.mtime_ns, item.kind, found, item.inode)
            )
    return ready


def _is_ready(
    name: str,
    has_marker: bool,
    tracker: SettleTracker,
    now: float,
    settle_seconds: float,
    mode: DoneMarkers,
) -> bool:
    if mode is DoneMarkers.REQUIRED:
        return has_marker
    if mode is DoneMarkers.AUTO and has_marker:
        return True
    return tracker.settled(name, now, settle_seconds)


def orphan_markers(seen: list[FileSeen]) -> list[str]:
    """The markers in a scan whose file is not there (yet, or ever)."""
    markers = [f.name for f in seen if f.kind is FileKind.MARKER]
    index = index_markers(markers)
    owned = {m for f in seen if f.kind is not FileKind.MARKER for m in markers_in(f.name, index)}
    return [m for m in markers if m not in owned]


def unreadable(folder_fd: int, name: str) -> str | None:
    """Why dropd cannot read the file `name` in the folder held as `folder_fd`, as a
    sentence naming its owner and mode; None when it can (or the file is gone: the claim
    then finds it gone)."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, dir_fd=folder_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return _unreadable_reason(folder_fd, name, exc)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return f"{quoted(name)} is no longer a regular file; dropd reads regular files only"
        return None
    finally:
        os.close(fd)


def _unreadable_reason(folder_fd: int, name: str, exc: OSError) -> str:
    try:
        info = os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
    except OSError:
        return f"{quoted(name)} cannot be read ({exc.strerror or exc}); drop it again"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return (
            f"{quoted(name)} cannot be read by dropd's user ({_user(os.geteuid())}): it "
            f"belongs to {_user(info.st_uid)}, group {_group(info.st_gid)}, with mode "
            f"{stat.S_IMODE(info.st_mode):04o}; let dropd's user read it (a group both "
            "share and chmod g+r, or a writer umask of 027) and drop it again"
        )
    return (
        f"{quoted(name)} cannot be read ({exc.strerror or exc}; owner {_user(info.st_uid)}, "
        f"mode {stat.S_IMODE(info.st_mode):04o}); check the disk or share, then drop it again"
    )


def _user(uid: int) -> str:
    try:
        return f'"{pwd.getpwuid(uid).pw_name}" (uid {uid})'
    except KeyError:
        return f"uid {uid}"


def _group(gid: int) -> str:
    try:
        return f'"{grp.getgrgid(gid).gr_name}" (gid {gid})'
    except KeyError:
        return f"gid {gid}"
