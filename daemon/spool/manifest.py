"""A batch's manifest: its state and everything `manifest.json` keeps of it.

What the manifest means lives here; where it lives on disk, and how it is written, is the
spool's.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any


class BatchState(enum.Enum):
    OPEN = "open"  # files are still joining
    CLAIMED = "claimed"  # closed, in line
    ZIPPED = "zipped"  # upload.zip is complete
    UPLOADING = "uploading"  # a POST may have reached the server
    SENT = "sent"  # answered 200; the move to sent/ is what is left
    FAILED = "failed"  # failed for good; the move to failed/ is what is left
    HELD = "held"  # the guard held it; the move to held/ is what is left


@dataclass(slots=True)
class FileRecord:
    name: str
    bytes: int
    sha256: str = ""
    kind: str = "csv"
    markers: list[str] = field(default_factory=list)
    mtime_ns: int = 0  # as claimed: a file that changes after its claim is still being written


@dataclass(slots=True)
class Manifest:
    batch: str
    group: str
    state: BatchState
    created: str
    files: list[FileRecord] = field(default_factory=list)
    zip: dict[str, Any] | None = None
    attempts: int = 0
    first_attempt: str | None = None
    record: dict[str, Any] | None = None  # receipt or error, written when the batch ends
    queued: str | None = None  # when it joined the line: the line's order, across restarts
    record_file: str | None = None  # receipt.json, or receipt.dropd.json beside a namesake
    history: list[dict[str, Any]] = field(default_factory=list)  # earlier error records
    parts: list[dict[str, Any]] = field(default_factory=list)  # the uploads, in order
    warnings: list[dict[str, Any]] = field(default_factory=list)  # row values to look at
    released: dict[str, Any] | None = None  # `dropd release`: by whom, when; no guard then
    # Why the batch's one file fails at step intake, written before the file is claimed, so
    # a crash during intake cannot turn it into a batch that goes up.
    refused: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The manifest as JSON-ready data."""
        data = asdict(self)
        data["state"] = self.state.value
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        """Rebuild a manifest from `to_json` output."""
        files = [FileRecord(**f) for f in data.pop("files", [])]
        state = BatchState(data.pop("state"))
        return cls(state=state, files=files, **data)
