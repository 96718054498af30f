"""A batch's manifest: its state and everything `manifest.json` keeps of it.

What the manifest means lives here; where it lives on disk, and how it is written, is the
spool's.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from daemon.base.errors import Finding


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
    converted_from: str = ""  # the encoding its copy in the ZIP was converted from to UTF-8
    escaped: int = 0  # characters its copy in the ZIP holds as \\uXXXX escapes


@dataclass(frozen=True, slots=True)
class PartAnswer:
    """The server's 200 to one part: what the manifest and the receipt keep of it."""

    status: int | None
    answer: Any  # the server's JSON, or its text, redacted
    resent_after_restart: bool  # in flight at a crash: it may have gone up twice


@dataclass(frozen=True, slots=True)
class Part:
    """One upload of a batch: a ZIP and the files in it (most batches have one)."""

    number: int  # 1, 2, ... in the order they go up
    zip: str  # its file name in the batch's spool folder
    files: tuple[str, ...]  # the batch's files in it, in the server's order
    entries: Mapping[str, str]  # file name -> entry name, where the ZIP holds it otherwise
    bytes: int
    sha256: str
    custom_notification: bool  # sent with customUsersNotification (a message.properties)
    # Files (CSVs, message.properties) whose byte-order mark was left out of the ZIP.
    bom_removed: tuple[str, ...] = ()
    sent: bool = False
    # The answer, once the server took it; None (and null in JSON) until then.
    status: int | None = None
    answer: Any = None
    resent_after_restart: bool | None = None

    def answered(self, said: PartAnswer) -> Part:
        """This part as the server took it."""
        return replace(
            self,
            sent=True,
            status=said.status,
            answer=said.answer,
            resent_after_restart=said.resent_after_restart,
        )

    def to_json(self) -> dict[str, Any]:
        """The part as manifest.json keeps it."""
        return {
            "number": self.number,
            "zip": self.zip,
            "files": list(self.files),
            "entries": dict(self.entries),
            "bytes": self.bytes,
            "sha256": self.sha256,
            "custom_notification": self.custom_notification,
            "bom_removed": list(self.bom_removed),
            "sent": self.sent,
            "status": self.status,
            "answer": self.answer,
            "resent_after_restart": self.resent_after_restart,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Part:
        """A part from `to_json` output (or an older dropd's, which had fewer keys)."""
        return cls(
            number=int(data["number"]),
            zip=str(data["zip"]),
            files=tuple(data["files"]),
            entries=dict(data.get("entries") or {}),
            bytes=int(data["bytes"]),
            sha256=str(data["sha256"]),
            custom_notification=bool(data["custom_notification"]),
            bom_removed=tuple(data.get("bom_removed") or ()),
            sent=bool(data.get("sent")),
            status=data.get("status"),
            answer=data.get("answer"),
            resent_after_restart=data.get("resent_after_restart"),
        )


@dataclass(frozen=True, slots=True)
class ZipSummary:
    """What a batch went up as: the bytes of all its ZIPs, and how many there are."""

    bytes: int
    sha256: str | None  # of the one ZIP; None when the batch was cut into parts
    parts: int

    @classmethod
    def of(cls, parts: Sequence[Part]) -> ZipSummary:
        """The summary of a batch's `parts`."""
        return cls(
            sum(p.bytes for p in parts), parts[0].sha256 if len(parts) == 1 else None, len(parts)
        )

    def to_json(self) -> dict[str, Any]:
        """The summary as manifest.json and the receipt hold it."""
        return {"bytes": self.bytes, "sha256": self.sha256, "parts": self.parts}


@dataclass(frozen=True, slots=True)
class UnpackedEntry:
    """An entry of a dropped ZIP that dropd took: its path in the ZIP, the base name it went
    up as, its bytes."""

    entry: str
    name: str
    bytes: int
    converted_from: str = ""  # as a loose file's record: its copy's encoding conversion
    escaped: int = 0  # and its \\uXXXX escapes


@dataclass(frozen=True, slots=True)
class Unpacked:
    """A dropped ZIP as dropd unpacked it: the entries taken, and macOS's files left out."""

    source: str  # the dropped ZIP's name
    entries: tuple[UnpackedEntry, ...]
    left_out: tuple[str, ...]  # their paths in the ZIP

    def to_json(self) -> dict[str, Any]:
        """As manifest.json and the batch's record hold it."""
        return {
            "from": self.source,
            "entries": [asdict(e) for e in self.entries],
            "left_out": list(self.left_out),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Unpacked:
        return cls(
            str(data["from"]),
            tuple(UnpackedEntry(**e) for e in data.get("entries") or ()),
            tuple(data.get("left_out") or ()),
        )


@dataclass(frozen=True, slots=True)
class Release:
    """Who sent a held batch with `dropd release`, and when: the guard lets it through."""

    by: str | None  # None only in a record someone else wrote without it
    at: str | None

    def to_json(self) -> dict[str, Any]:
        return {"by": self.by, "at": self.at}


@dataclass(slots=True)
class Manifest:
    batch: str
    group: str
    state: BatchState
    created: str
    files: list[FileRecord] = field(default_factory=list)
    zip: ZipSummary | None = None
    attempts: int = 0
    first_attempt: str | None = None
    # The receipt or error record, as written beside the files when the batch ends.
    record: dict[str, Any] | None = None
    queued: str | None = None  # when it joined the line: the line's order, across restarts
    record_file: str | None = None  # receipt.json, or receipt.dropd.json beside a namesake
    # Earlier error (or held) records, kept as they were read: they go back into the next
    # record's `earlier_errors` unchanged.
    history: list[dict[str, Any]] = field(default_factory=list)
    parts: list[Part] = field(default_factory=list)  # the uploads, in order
    warnings: tuple[Finding, ...] = ()  # row values to look at
    released: Release | None = None  # `dropd release`: by whom, when; no guard then
    # Why the batch's one file fails at step intake, written before the file is claimed, so
    # a crash during intake cannot turn it into a batch that goes up.
    refused: str | None = None
    unpacked: Unpacked | None = None  # a dropped ZIP's entries, once unpacked

    def to_json(self) -> dict[str, Any]:
        """The manifest as JSON-ready data."""
        return {
            "batch": self.batch,
            "group": self.group,
            "state": self.state.value,
            "created": self.created,
            "files": [asdict(f) for f in self.files],
            "zip": None if self.zip is None else self.zip.to_json(),
            "attempts": self.attempts,
            "first_attempt": self.first_attempt,
            "record": self.record,
            "queued": self.queued,
            "record_file": self.record_file,
            "history": self.history,
            "parts": [p.to_json() for p in self.parts],
            "warnings": [w.to_json() for w in self.warnings],
            "released": None if self.released is None else self.released.to_json(),
            "refused": self.refused,
            "unpacked": None if self.unpacked is None else self.unpacked.to_json(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        """Rebuild a manifest from `to_json` output."""
        summary, released = data.get("zip"), data.get("released")
        unpacked = data.get("unpacked")
        return cls(
            batch=data["batch"],
            group=data["group"],
            state=BatchState(data["state"]),
            created=data["created"],
            files=[FileRecord(**f) for f in data.get("files", [])],
            zip=None if summary is None else ZipSummary(**summary),
            attempts=data.get("attempts", 0),
            first_attempt=data.get("first_attempt"),
            record=data.get("record"),
            queued=data.get("queued"),
            record_file=data.get("record_file"),
            history=data.get("history", []),
            parts=[Part.from_json(p) for p in data.get("parts", [])],
            warnings=tuple(Finding(**w) for w in data.get("warnings", [])),
            released=None if released is None else Release(**released),
            refused=data.get("refused"),
            unpacked=None if unpacked is None else Unpacked.from_json(unpacked),
        )
