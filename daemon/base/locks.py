"""Locks held for a process's life: an flock on a file that holds the holder's pid.

Two are taken: `state_dir/lock`, so that one dropd runs per state_dir (two would overwrite
each other's `status.json` and token cache), and each drop folder's `.dropd/lock`, so that
one dropd works a folder at a time. The kernel lets go of an flock when its holder exits,
however it exits, so a stale file never blocks a restart; the pid in the file lets the one
refused say which process to look at.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path

from daemon.base.errors import StateDirBusy

LOCK_FILE = "lock"
_PID_BYTES = 32  # a pid and a newline, with room to spare


class LockHeld(Exception):
    """Another open file holds the lock; `pid` is its holder's, where it can be read."""

    def __init__(self, pid: int | None) -> None:
        super().__init__(f"held by pid {pid}")
        self.pid = pid


def take_lock(path: Path | str, dir_fd: int | None = None) -> int:
    """Take the lock file at `path` (relative to `dir_fd` if given; made 0600 if missing)
    without waiting, write this process's pid in it, and return its descriptor.

    Raises LockHeld when another open file holds it; OSError when it cannot be opened or
    locked: ELOOP where it is a symbolic link, which is never followed, EINVAL where it is
    not a regular file.
    """
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    fd = os.open(path, flags, 0o600, dir_fd=dir_fd)  # O_NONBLOCK: a FIFO must not hang us
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "it is not a regular file", str(path))
        # flock, not lockf: held per open file (so even two groups of one process exclude
        # each other), and released by the kernel when the process ends. Linux's NFS client
        # carries flock as a byte-range lock, which NFSv4 servers honour across hosts.
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = _read_pid(fd) if exc.errno in (errno.EACCES, errno.EAGAIN) else None
        os.close(fd)
        if exc.errno in (errno.EACCES, errno.EAGAIN):
            raise LockHeld(holder) from None
        raise
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


class StateDirLock:
    """The held lock of one state_dir; `release()` lets go of it (process exit does too)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, state_dir: Path) -> StateDirLock:
        """Take `state_dir/lock` (see `take_lock`).

        Raises StateDirBusy (with the holder's pid where it can be read) when another
        process holds it, OSError as `take_lock`.
        """
        path = state_dir / LOCK_FILE
        try:
            return cls(path, take_lock(path))
        except LockHeld as held:
            raise StateDirBusy(state_dir, held.pid) from None

    def release(self) -> None:
        """Let go of the lock; a second call does nothing."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _read_pid(fd: int) -> int | None:
    """The pid the holder wrote, or None while it has not written it yet or it is no pid."""
    try:
        text = os.pread(fd, _PID_BYTES, 0).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None
