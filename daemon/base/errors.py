"""The errors dropd raises, as a small tree decided by type, never by message.

    DropdError
    ├── ConfigError      the TOML is wrong; .problems lists every `key.path: why`
    ├── StateDirBusy     another dropd runs with this state_dir (.state_dir, .pid or None)
    ├── SecretError      a client secret cannot be read (file, env var, credential)
    ├── ArchiveError     the ZIP of a batch cannot be built (.path, .reason)
    ├── SpoolError       the on-disk batch cannot be read, written or moved (.path, .reason)
    │   └── FolderError  a folder dropd writes is a link, not a folder, gone or replaced
    ├── SourceError      a file of a batch cannot be read as the regular file it was (.name,
    │                    .reason): it fails at step intake
    ├── StillWritten     a file of a batch changed after its claim: a writer still writes it
    ├── RequeueError     `dropd retry` or `release` cannot put that batch back in line
    ├── OversizeError    one file cannot fit in `max_upload_bytes` (.name, .needs, .limit)
    ├── ValidationError  the server would refuse the batch's files (.problems, each with
    │                    file, line, message)
    ├── GuardError       the guard holds the batch: it would delete too much (.offences, each
    │                    with file, rows, deleted, share, limit)
    └── TokenError       no token can be had, or a fresh one is refused (.environment, .rejected)

An upload's answer is not an error but an outcome (`api.UploadOutcome`: sent, retry, failed,
unauthorized), because every answer is expected. `requests` failures are translated in `api`
and `auth`, `zipfile` failures in `archive`, `OSError` in `spool`: each in one place, with
`raise ... from exc`.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

from daemon.base.names import quoted


def os_reason(exc: OSError) -> str:
    """An OSError as a sentence a person can act on (used wherever the disk says no)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full; free some space and dropd carries on"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied; give dropd's user write access"
    if exc.errno == errno.EROFS:
        return "the file system is read-only; remount it read-write"
    if exc.errno == errno.ELOOP:
        return "it is a symbolic link, and dropd never reads through links; drop the file itself"
    if exc.errno == errno.EXDEV:
        return "sent/ or failed/ is on another file system; keep them in the drop folder"
    return exc.strerror or str(exc)


class DropdError(Exception):
    """Base of every error dropd raises on purpose."""


class ConfigError(DropdError):
    """The configuration is invalid; `problems` holds every `key.path: why`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class StateDirBusy(DropdError):
    """Another process holds `state_dir`'s lock: one dropd runs per state_dir. `pid` is the
    holder's, as it wrote it in the lock file, or None when it cannot be read."""

    def __init__(self, state_dir: Path, pid: int | None) -> None:
        holder = "another dropd" if pid is None else f"another dropd (pid {pid})"
        super().__init__(f"{holder} runs with state_dir {state_dir}")
        self.state_dir = state_dir
        self.pid = pid


class SecretError(DropdError):
    """A client secret cannot be read from where the config says it is."""

    def __init__(self, environment: str, reason: str) -> None:
        super().__init__(f"environments.{environment}: {reason}")
        self.environment = environment
        self.reason = reason


class ArchiveError(DropdError):
    """The ZIP of a batch cannot be built."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class SpoolError(DropdError):
    """The on-disk state of a batch cannot be read, written or moved."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class FolderError(SpoolError):
    """A folder dropd writes, moves into or prunes is a symbolic link or not a folder, or the
    drop folder is gone or was replaced: the group waits at step `folder` until a person fixes
    it, and nothing is filed or pruned meanwhile."""


class SourceError(DropdError):
    """A file of a batch cannot be read, or is no longer the regular file that was claimed."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(reason)
        self.name = name
        self.reason = reason


class StillWritten(DropdError):
    """A file of a batch changed after it was claimed, or while it was zipped: a writer still
    writes it through an open handle. Nothing goes up; the batch waits and is zipped again."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(reason)
        self.name = name
        self.reason = reason


class RequeueError(DropdError):
    """An operator's `retry` or `release` cannot be done as asked; the message says why and
    what to do."""


class OversizeError(DropdError):
    """One file of a batch cannot fit in one upload of `max_upload_bytes`."""

    def __init__(self, name: str, needs: int, limit: int) -> None:
        super().__init__(
            f"{quoted(name)} needs {needs:,} bytes in a ZIP, more than max_upload_bytes "
            f"({limit:,}) allows for one upload, and dropd never cuts a file; raise "
            "max_upload_bytes if the server accepts larger uploads, or split the file"
        )
        self.name = name
        self.needs = needs
        self.limit = limit


class ValidationError(DropdError):
    """The server would refuse the batch's files; `problems` lists every one found."""

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        first = problems[0]  # its message says the line where there is one
        super().__init__(
            f"{len(problems)} problem(s) in the batch's files, the first in "
            f"{quoted(first['file'])}: "
            f"{first['message']}; fix the files and drop them again (error.json lists every "
            "problem)"
        )
        self.problems = problems


class GuardError(DropdError):
    """The batch deletes more than its group's `max_deleted_percent` allows (rule 11)."""

    def __init__(self, offences: list[dict[str, Any]]) -> None:
        files = ", ".join(quoted(o["file"]) for o in offences)
        super().__init__(f"the guard holds the batch: {files} delete(s) too many rows")
        self.offences = offences


class TokenError(DropdError):
    """No access token can be had for an environment, or a fresh one was refused."""

    def __init__(self, environment: str, reason: str, *, rejected: bool = False) -> None:
        super().__init__(f"environment {environment}: {reason}")
        self.environment = environment
        self.reason = reason
        self.rejected = rejected  # the credentials were refused, not merely unreachable
