"""Is a group folder one dropd can work? For `dropd verify`; it only looks, never writes.

dropd moves files by rename: into `.dropd/work/`, then to `sent/`, `failed/` or `held/`. A
rename cannot cross file systems, so each of those, where it exists, must be on the folder's;
and none may be a symbolic link, as dropd never writes through one.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from daemon.base.errors import os_reason

# Where dropd moves files, relative to the group folder.
MOVED_TO = ("sent", "failed", "held", ".dropd", ".dropd/work")


def folder_problems(folder: Path) -> list[str]:
    """Every problem with `folder` as a drop folder, each a sentence; [] when it is fine."""
    try:
        info = os.stat(folder)
    except (FileNotFoundError, NotADirectoryError):
        return [f"{folder} does not exist; create it or fix the group's folder"]
    except OSError as exc:
        return [f"{folder} cannot be looked at: {os_reason(exc)}"]
    if not stat.S_ISDIR(info.st_mode):
        return [f"{folder} is not a folder; give the path of a folder"]
    problems = _unwritable(folder)
    writable = not problems  # else every subfolder would say the same again
    for name in MOVED_TO:
        problems += _subfolder_problems(folder, folder / name, info.st_dev, writable)
    return problems


def _subfolder_problems(folder: Path, sub: Path, device: int, check_write: bool) -> list[str]:
    try:
        info = os.lstat(sub)
    except FileNotFoundError:
        return []  # dropd makes it when it needs it
    except OSError as exc:
        return [f"{sub} cannot be looked at: {os_reason(exc)}"]
    if stat.S_ISLNK(info.st_mode):
        return [
            f"{sub} is a symbolic link to {_target(sub)}, and dropd never writes through a "
            f"link; replace it with a real folder (rm {sub}; dropd makes it)"
        ]
    if not stat.S_ISDIR(info.st_mode):
        return [f"{sub} is not a folder, and dropd moves files into it; move it away"]
    if info.st_dev != device:
        return [
            f"{sub} is on another file system than {folder}; dropd moves files there by "
            "rename, which cannot cross file systems: keep it on the folder's file system"
        ]
    return _unwritable(sub) if check_write else []


def _target(link: Path) -> str:
    try:
        return os.readlink(link)
    except OSError:
        return "somewhere"


def _unwritable(path: Path) -> list[str]:
    """A problem if this process may not list, enter and write `path`.

    Root passes every permission check, so run verify as dropd's user to check its rights;
    only a read-only file system stops root too.
    """
    if os.access(path, os.R_OK | os.W_OK | os.X_OK):
        return []
    code = errno.EROFS if _read_only(path) else errno.EACCES
    return [f"{path} is not writable: {os_reason(OSError(code, os.strerror(code)))}"]


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False
