"""The records a batch leaves beside its files when it ends: receipt.json in sent/,
error.json in failed/, held.json in held/.

Built from the manifest as typed records, turned into JSON only to be written (and then
redacted and cut by `base.records.for_people`). The field names and their order are what
operators and their scripts read: they do not change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from daemon.base.errors import Finding, Offence
from daemon.base.names import name_fields, shown
from daemon.base.steps import Step
from daemon.checks.guard import held_reason
from daemon.spool.manifest import FileRecord, Part, Release, Unpacked, UnpackedEntry, ZipSummary

__all__ = ["BatchRecord", "Failure", "HeldRecord"]


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a batch failed for good: the step, the sentence, and what the checks found."""

    step: Step
    reason: str
    problems: tuple[Finding, ...] | None = None  # only when the checks failed it
    # Only when the checks failed it: each file as they read it (name, bytes, sha256), so
    # that `dropd retry` can tell whether a person has fixed them since.
    files_at_failure: tuple[FileRecord, ...] | None = None


@dataclass(frozen=True, slots=True)
class BatchRecord:
    """receipt.json (sent) or error.json (failed, with its `failure`): everything known of
    the batch."""

    batch: str
    group: str
    group_name: str
    environment: str
    url: str
    files: tuple[FileRecord, ...]
    zip: ZipSummary | None
    status: int | None  # the answer that decided the batch: the failing one, else the last 200
    answer: Any
    parts: tuple[Part, ...]
    attempts: int
    created: str
    first_attempt: str | None
    finished: str
    earlier_errors: tuple[dict[str, Any], ...]  # earlier records, as they were read
    warnings: tuple[Finding, ...]
    released: Release | None
    failure: Failure | None = None
    unpacked: Unpacked | None = None  # a dropped ZIP: the entries taken, the junk left out

    def to_json(self) -> dict[str, Any]:
        """The record as it is written."""
        data: dict[str, Any] = {
            "batch": self.batch,
            "group": self.group,
            "group_name": self.group_name,
            "environment": self.environment,
            "url": self.url,
            "files": [_file_json(f) for f in self.files],
            "zip": None if self.zip is None else self.zip.to_json(),
            "status": self.status,
            "answer": self.answer,
            "parts": [_part_json(p) for p in self.parts],
            "resent_after_restart": any(p.resent_after_restart for p in self.parts),
            "bom_removed": [n for p in self.parts for n in p.bom_removed],
            "attempts": self.attempts,
            "created": self.created,
            "first_attempt": self.first_attempt,
            "finished": self.finished,
            "earlier_errors": list(self.earlier_errors),
            "warnings": [w.to_json() for w in self.warnings],
            "released": self.released is not None,
            "released_by": None if self.released is None else self.released.by,
            "released_at": None if self.released is None else self.released.at,
        }
        if self.unpacked is not None:  # only a batch dropped as a ZIP has it
            data["unpacked"] = _unpacked_json(self.unpacked)
        if self.failure is not None:
            data["step"] = self.failure.step
            data["reason"] = self.failure.reason
            if self.failure.problems is not None:
                data["problems"] = [p.to_json() for p in self.failure.problems]
            if self.failure.files_at_failure is not None:
                data["files_at_failure"] = [
                    {**name_fields(f.name), "bytes": f.bytes, "sha256": f.sha256 or None}
                    for f in self.failure.files_at_failure
                ]
        return data


@dataclass(frozen=True, slots=True)
class HeldRecord:
    """held.json: what the batch's record would say of it, and why the guard holds it."""

    about: BatchRecord
    offences: tuple[Offence, ...]
    min_rows_for_guard: int
    held: str  # when
    config_option: str = ""  # ` --config PATH` for the release command; "" for the default

    @property
    def reason(self) -> str:
        """Why the batch is held, and what a person can do, in one sentence."""
        return held_reason(self.about.batch, self.about.group, self.offences, self.config_option)

    def to_json(self) -> dict[str, Any]:
        """The record as it is written: a release needs its batch, files, attempts,
        created, earlier errors and warnings."""
        about = self.about.to_json()
        data = {
            **{key: about[key] for key in _HELD_KEYS},
            "step": Step.GUARD,
            "reason": self.reason,
            "guard": [o.to_json() for o in self.offences],
            "min_rows_for_guard": self.min_rows_for_guard,
            "held": self.held,
        }
        if "unpacked" in about:  # a batch dropped as a ZIP: what was taken and left out
            data["unpacked"] = about["unpacked"]
        return data


# What held.json keeps of the record a sent or failed batch would have.
_HELD_KEYS = (
    "batch",
    "group",
    "group_name",
    "environment",
    "files",
    "attempts",
    "created",
    "earlier_errors",
    "warnings",
)


def _file_json(record: FileRecord) -> dict[str, Any]:
    data: dict[str, Any] = {
        **name_fields(record.name),
        "bytes": record.bytes,
        "sha256": record.sha256 or None,
        "kind": record.kind,
    }
    # Only where the copy that went up differs from the original so: the original is kept.
    if record.converted_from:
        data["converted"] = {"from": record.converted_from, "to": "utf-8"}
    if record.escaped:
        data["escaped"] = record.escaped
    return data


def _unpacked_json(unpacked: Unpacked) -> dict[str, Any]:
    return {
        "from": shown(unpacked.source),
        "entries": [_entry_json(e) for e in unpacked.entries],
        "left_out": [shown(path) for path in unpacked.left_out],
    }


def _entry_json(entry: UnpackedEntry) -> dict[str, Any]:
    data: dict[str, Any] = {
        "entry": shown(entry.entry),
        "name": shown(entry.name),
        "bytes": entry.bytes,
    }
    if entry.converted_from:  # as in `files`: only where the copy differs so
        data["converted"] = {"from": entry.converted_from, "to": "utf-8"}
    if entry.escaped:
        data["escaped"] = entry.escaped
    return data


def _part_json(part: Part) -> dict[str, Any]:
    data: dict[str, Any] = {
        "number": part.number,
        "files": [shown(name) for name in part.files],
        "bytes": part.bytes,
        "sha256": part.sha256,
        "custom_notification": part.custom_notification,
        "sent": part.sent,
        "status": part.status,
        "answer": part.answer,
        "resent_after_restart": part.resent_after_restart,
    }
    if part.entries:  # names that are not UTF-8, as the ZIP holds them
        data["entries"] = {shown(name): entry for name, entry in part.entries.items()}
    return data
