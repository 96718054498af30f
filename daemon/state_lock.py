"""One dropd per `state_dir`: `dropd run` holds `state_dir/lock` for its whole life.

Two daemons on one state_dir would overwrite each other's `status.json` and token cache, so
`dropd status` would flip between them. The lock is an flock on a file that holds the
holder's pid, so the second dropd can say which process to look at; the kernel lets go of
it when the holder exits, however it exits, so a stale file never blocks a restart.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path

from daemon.errors import StateDirBusy

LOCK_FILE = "lock"
_PID_BYTES = 32  # a pid and a newline, with room to spare


class StateDirLock:
    """The held lock of one state_dir; `release()` lets go of it (process exit does too)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, state_dir: Path) -> StateDirLock:
        """Take `state_dir/lock` without waiting and write this process's pid in it.

        Raises StateDirBusy (with the holder's pid where it can be read) when another
        process holds it, OSError when the file cannot be opened or locked: ELOOP where it is
        a symbolic link, which is never followed, EINVAL where it is not a regular file.
        """
        path = state_dir / LOCK_FILE
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        fd = os.open(path, flags, 0o600)  # O_NONBLOCK: a FIFO put there must not hang us
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(errno.EINVAL, "it is not a regular file", str(path))
            # flock, not lockf: held per open file, and released by the kernel when the
            # process ends, so a dropd killed with -9 leaves nothing to clean up.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise StateDirBusy(state_dir, holder) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(path, fd)

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
