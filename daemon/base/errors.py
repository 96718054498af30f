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
    ├── ValidationError  the server would refuse the batch's files (.problems: `Finding`s,
    │                    each with file, line, message)
    ├── GuardError       the guard holds the batch: it would delete too much (.offences:
    │                    `Offence`s, each with file, rows, deleted, share, limit)
    └── TokenError       no token can be had, or a fresh one is refused (.environment, .reason,
                         .rejected, .retryable)

An upload's answer is not an error but an outcome (`upload.UploadOutcome`: sent, retry,
failed, unauthorized), because every answer is expected. `requests` failures are translated
in `provider.upload` and `provider.tokens`, `zipfile` failures in `archive`, `OSError` in
`spool`: each in one place, with `raise ... from exc`. A reason names the cause; whether
dropd tries again is an attribute (`retryable`), and the sentence that says so is composed
where it is shown.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.base.names import quoted

# How a sentence ends when its cause may pass by itself and dropd tries again.
TRIES_AGAIN = "; dropd tries again"


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


@dataclass(frozen=True, slots=True)
class Finding:
    """What checking a file found: a problem (fails the batch) or a warning (logged, kept in
    the receipt)."""

    file: str
    line: int | None  # 1-based, the header being line 1; None: the whole file
    message: str

    def to_json(self) -> dict[str, Any]:
        """The finding as error.json, the receipt and the `row_warning` event hold it."""
        return {"file": self.file, "line": self.line, "message": self.message}


@dataclass(frozen=True, slots=True)
class Offence:
    """One CSV over the guard's limit: its data rows, its deleted rows, the limit it broke."""

    file: str
    rows: int
    deleted: int
    limit: float  # max_deleted_percent

    @property
    def share(self) -> float:
        """Deleted rows as a percentage of data rows, to two decimals."""
        return round(self.deleted * 100 / self.rows, 2)

    def to_json(self) -> dict[str, Any]:
        """The offence as held.json and the `batch_held` event list it."""
        return {
            "file": self.file,
            "rows": self.rows,
            "deleted": self.deleted,
            "share": self.share,
            "limit": self.limit,
        }


class ValidationError(DropdError):
    """The server would refuse the batch's files; `problems` lists every one found."""

    def __init__(self, problems: Sequence[Finding]) -> None:
        first = problems[0]  # its message says the line where there is one
        super().__init__(
            f"{len(problems)} problem(s) in the batch's files, the first in "
            f"{quoted(first.file)}: "
            f"{first.message}; fix the files and drop them again (error.json lists every "
            "problem)"
        )
        self.problems = tuple(problems)


class GuardError(DropdError):
    """The batch deletes more than its group's `max_deleted_percent` allows."""

    def __init__(self, offences: Sequence[Offence]) -> None:
        files = ", ".join(quoted(o.file) for o in offences)
        super().__init__(f"the guard holds the batch: {files} delete(s) too many rows")
        self.offences = tuple(offences)


class TokenError(DropdError):
    """No access token can be had for an environment, or a fresh one was refused.

    `reason` names the cause; `retryable` says the token endpoint answered something that may
    pass by itself (a 5xx, a proxy's page), which the sentence shown says dropd tries again.
    """

    def __init__(
        self, environment: str, reason: str, *, rejected: bool = False, retryable: bool = False
    ) -> None:
        super().__init__(f"environment {environment}: {reason}{TRIES_AGAIN if retryable else ''}")
        self.environment = environment
        self.reason = reason
        self.rejected = rejected  # the credentials were refused, not merely unreachable
        self.retryable = retryable
