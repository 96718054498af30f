"""The errors dropd raises, as a small tree decided by type, never by message.

    DropdError
    ├── ConfigError            the TOML is wrong; .problems lists every `key.path: why`
    ├── SecretError            a client secret cannot be read (file, env var, credential)
    ├── IntakeError            a dropped file cannot be taken (.path)
    ├── ValidationError        a batch's files would be rejected by the server (.problems)
    ├── ArchiveError           the ZIP of a batch cannot be built (.path)
    ├── SpoolError             the on-disk batch cannot be read or moved (.path)
    └── UploadError            one upload did not end in a 200
        ├── TokenError             no token can be had, or a fresh one is refused (.environment)
        ├── TransientUploadError   worth trying again later (.status, .retry_after)
        └── PermanentUploadError   the server said no for good (.status, .message, .file_errors)

`requests` failures are translated in `api` and `auth`, `zipfile` failures in `archive`,
`OSError` in `spool`: each in one place, with `raise ... from exc`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class DropdError(Exception):
    """Base of every error dropd raises on purpose."""


class ConfigError(DropdError):
    """The configuration is invalid; `problems` holds every `key.path: why`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class SecretError(DropdError):
    """A client secret cannot be read from where the config says it is."""

    def __init__(self, environment: str, reason: str) -> None:
        super().__init__(f"environments.{environment}: {reason}")
        self.environment = environment
        self.reason = reason


class IntakeError(DropdError):
    """A dropped file cannot be taken as it is."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class ValidationError(DropdError):
    """The files of a batch would be rejected by the server; `problems` says where."""

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(problems)} problem(s) in the batch's files")
        self.problems = problems


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


class UploadError(DropdError):
    """One upload did not end in a 200."""


class TokenError(UploadError):
    """No access token can be had for an environment, or a fresh one was refused."""

    def __init__(self, environment: str, reason: str, *, rejected: bool = False) -> None:
        super().__init__(f"environment {environment}: {reason}")
        self.environment = environment
        self.reason = reason
        self.rejected = rejected  # the credentials were refused, not merely unreachable


class TransientUploadError(UploadError):
    """The upload may work if tried again later (timeouts, 408, 429, 5xx, resets)."""

    def __init__(
        self,
        reason: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        answer: Any = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after
        self.answer = answer


class PermanentUploadError(UploadError):
    """The server refused the upload for good; its message and fileErrors are kept."""

    def __init__(
        self, status: int, message: str, file_errors: Any = None, answer: Any = None
    ) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message
        self.file_errors = file_errors
        self.answer = answer
