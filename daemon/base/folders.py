"""Folders held by descriptor: what is in a drop folder is reached relative to the descriptor
dropd holds, never through a symbolic link and never by a path resolved again later.

A drop folder is shared with the people and jobs that write into it, so any name in it may
be replaced at any moment: `sent` by a link to another folder, `.dropd` by a dangling link,
the drop folder itself by a new one. So each folder dropd writes, moves into or prunes is
opened relative to a folder it already holds, with `O_NOFOLLOW | O_DIRECTORY` (a link or a
file there is refused, not followed), and files move between held folders by `renameat`.

Where a library wants a path (zipfile, open), `Folder.io_path` names the held folder through
`/proc/self/fd`, which the kernel resolves to that very folder, wherever it now is.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from types import TracebackType

from daemon.base.errors import FolderError, os_reason

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
Identity = tuple[int, int]  # (device, inode): what a folder is, whatever its path


class Folder:
    """A folder held open by its descriptor; `shown` is its path for messages."""

    def __init__(self, fd: int, shown: Path) -> None:
        self.fd = fd
        self.shown = shown

    @classmethod
    def at(cls, path: Path) -> Folder:
        """Open the folder at `path` (links in the path itself are the sysadmin's choice).

        Raises FolderError if it is not there, not a folder or cannot be opened.
        """
        try:
            return cls(os.open(path, _DIR_FLAGS), path)
        except OSError as exc:
            raise FolderError(path, _why(path, exc)) from exc

    def sub(self, name: str, *, create: bool = False, mode: int = 0o777) -> Folder:
        """The folder `name` directly in this one, opened without following a link.

        With `create`, it is made (with `mode`, less the umask) when missing. Raises
        FolderError if it is a link or not a folder, FileNotFoundError if it is missing and
        not to be made, and FolderError for any other refusal.
        """
        path = self.shown / name
        if create:
            try:
                os.mkdir(name, mode, dir_fd=self.fd)
            except FileExistsError:
                pass
            except OSError as exc:
                raise FolderError(path, os_reason(exc)) from exc
        try:
            return Folder(os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=self.fd), path)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise FolderError(path, _why(path, exc, self.fd, name)) from exc

    def find(self, name: str) -> Folder | None:
        """`sub(name)`, or None when there is no such entry."""
        try:
            return self.sub(name)
        except FileNotFoundError:
            return None

    def identity(self) -> Identity:
        info = os.fstat(self.fd)
        return info.st_dev, info.st_ino

    def mount_flags(self) -> int:
        """The flags of the mount it is seen through (read-only, nosuid, …)."""
        return os.fstatvfs(self.fd).f_flag

    def entry_identity(self, name: str) -> Identity | None:
        """What the entry `name` in this folder is (a link not followed); None if absent."""
        try:
            info = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        return info.st_dev, info.st_ino

    @property
    def io_path(self) -> Path:
        """A path to this very folder for libraries that want one (`/proc/self/fd/N`)."""
        return Path(f"/proc/self/fd/{self.fd}")

    def where(self) -> str:
        """Where the held folder is now (it may have been moved), as the kernel says."""
        try:
            return os.readlink(f"/proc/self/fd/{self.fd}")
        except OSError:
            return str(self.shown)

    def names(self) -> list[str]:
        """The names in this folder."""
        return os.listdir(self.fd)

    def fsync(self) -> None:
        os.fsync(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Folder:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def problem_of(parent: Folder, name: str) -> str | None:
    """Why the entry `name` in `parent` cannot be a folder dropd writes (a link, a file), as
    a sentence; None when it is a folder or absent (dropd makes it)."""
    try:
        info = os.stat(name, dir_fd=parent.fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"{parent.shown / name} cannot be looked at: {os_reason(exc)}"
    return _kind_problem(parent.shown / name, info.st_mode, parent.fd, name)


def _kind_problem(path: Path, mode: int, dir_fd: int | None, name: str) -> str | None:
    if stat.S_ISDIR(mode):
        return None
    if stat.S_ISLNK(mode):
        target = _link_target(dir_fd, name)
        return (
            f"{path} is a symbolic link{target}, and dropd never writes through a link; "
            f"replace it with a real folder (rm {path}; dropd makes it) and the group goes on"
        )
    return (
        f"{path} is not a folder, and dropd files batches there; move it away (dropd makes "
        "the folder) and the group goes on"
    )


def _link_target(dir_fd: int | None, name: str) -> str:
    try:
        return f" to {os.readlink(name, dir_fd=dir_fd)}"
    except OSError:
        return ""


def _why(path: Path, exc: OSError, dir_fd: int | None = None, name: str = "") -> str:
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        try:
            info = os.stat(name or path, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            return f"{path} is not a folder"
        return _kind_problem(path, info.st_mode, dir_fd, name or str(path)) or str(path)
    if exc.errno == errno.ENOENT:
        return (
            f"{path} does not exist; check the share is mounted, or create the folder (or "
            "fix the group's folder)"
        )
    return f"{path} cannot be opened: {os_reason(exc)}"
