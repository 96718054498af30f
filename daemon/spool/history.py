"""What a group folder says of its past: failed batches, the last upload, whether the last
batch failed, the batches the guard holds. The disk is the truth, so status survives a restart.

Cheap on purpose: names are listed and sorted (a batch id sorts by time), and only the newest
receipt, the newest error record and the records of held batches are read.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon.base.errors import DropdError
from daemon.base.folders import Folder
from daemon.base.regular import open_regular

_BATCH_ID = re.compile(r"\d{8}T\d{6}\.\d{6}Z-[0-9a-f]+")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
RECORD_READ_LIMIT = 1 << 20  # a record dropd wrote is under 64 KiB; more is not one


@dataclass(frozen=True, slots=True)
class FolderHistory:
    failed_batches: int = 0  # batch folders now in failed/ (`dropd retry` takes one out)
    last_upload: str | None = None  # `finished` of the newest receipt in sent/
    last_failure: tuple[str, str] | None = None  # (step, reason) if the newest batch failed
    newest_failed: str | None = field(default=None, compare=False)  # the newest in failed/


def folder_history(folder: Path | Folder) -> FolderHistory:
    """Read sent/ and failed/ of a group folder; a part that cannot be read, or that is a
    link (never followed), counts as empty."""
    with _held(folder) as root:
        if root is None:
            return FolderHistory()
        with _sub(root, "failed") as failed_dir, _sub(root, "held") as held_dir:
            failed = batch_names(failed_dir)
            sent = _newest_sent(root)
            receipt = None if sent is None else _record(sent, "receipt")
            last_upload = None if receipt is None else receipt.finished
            last_failure = None
            # The newest batch that ended decides: a batch held after a failure is newer news.
            newer = max([sent.shown.name if sent else "", *batch_names(held_dir)[-1:]])
            if failed and failed[-1] > newer and failed_dir is not None:
                last_failure = _failure_in(failed_dir, failed[-1])
            if sent is not None:
                sent.close()
            return FolderHistory(
                len(failed), last_upload, last_failure, failed[-1] if failed else None
            )


def failed_batch_ids(folder: Path | Folder) -> list[str]:
    """The batches in the group folder's failed/, oldest first; [] if it cannot be listed."""
    with _held(folder) as root, _sub(root, "failed") as failed:
        return batch_names(failed)


def held_batches(folder: Path | Folder, known: Mapping[str, str] | None = None) -> dict[str, str]:
    """The batches in the group folder's held/, oldest first, each with its held.json's
    reason; a reason in `known` is kept, so only a batch new to held/ has its record read."""
    known = known or {}
    with _held(folder) as root, _sub(root, "held") as held:
        if held is None:
            return {}
        return {name: known.get(name) or _held_reason(held, name) for name in batch_names(held)}


def _held_reason(held: Folder, name: str) -> str:
    with _sub(held, name) as batch:
        record = _record(batch, "held")
    reason = None if record is None else record.reason
    return reason or (
        f"batch {name} is held in {held.shown / name}, which has no readable held.json; "
        "`dropd release` it or remove the folder"
    )


def batch_names(parent: Folder | None) -> list[str]:
    """The batch folders in `parent`, oldest first; [] if it cannot be listed."""
    return sorted(n for n in _folders(parent) if is_batch_id(n))


def is_batch_id(text: str) -> bool:
    """True when `text` has the shape of a batch id (`20261123T085810.123456Z-3f9a`)."""
    return _BATCH_ID.fullmatch(text) is not None


def record_names(stem: str) -> tuple[str, str]:
    """The names the record `stem` (receipt, error, held) may have, dropd's own first:
    where a dropped file bore the record's name, dropd's is STEM.dropd.json."""
    return f"{stem}.dropd.json", f"{stem}.json"


def read_json(batch: Folder, name: str) -> dict[str, Any] | None:
    """The JSON object in `batch`'s file `name` (a regular file, at most RECORD_READ_LIMIT
    bytes read); None where it cannot be read or holds no object."""
    try:
        with open_regular(batch.io_path / name) as source:
            data = json.loads(source.read(RECORD_READ_LIMIT))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def open_child(parent: Folder | None, name: str) -> Folder | None:
    """The folder `name` in `parent`, opened; None where it is missing, a link or a file
    (never followed). The caller closes it."""
    if parent is None:
        return None
    try:
        return parent.find(name)
    except (DropdError, OSError):
        return None


def text_or_none(value: object) -> str | None:
    """`value` where it is a non-empty text, else None: a record's field read with care."""
    return value if isinstance(value, str) and value else None


def _newest_sent(root: Folder) -> Folder | None:
    """The newest batch folder under `sent/YYYY-MM-DD/` that holds a receipt (the caller
    closes it)."""
    with _sub(root, "sent") as sent:
        for day in sorted((d for d in _folders(sent) if _DAY.fullmatch(d)), reverse=True):
            with _sub(sent, day) as dated:
                for name in reversed(batch_names(dated)):
                    batch = open_child(dated, name)
                    if batch is not None and _record(batch, "receipt") is not None:
                        return batch
                    if batch is not None:
                        batch.close()
    return None


def _failure_in(failed: Folder, name: str) -> tuple[str, str]:
    """The step and reason of a failed batch, from its error.json."""
    with _sub(failed, name) as batch:
        record = _record(batch, "error")
    where = failed.shown / name
    if record is None:
        return "unknown", f"batch {name} failed; {where} has no readable error.json"
    reason = record.reason or f"batch {name} failed; see {where}"
    return record.step or "unknown", reason


class _Optional:
    """A folder that may not be there, for `with`: None then, closed after."""

    def __init__(self, folder: Folder | None, close: bool = True) -> None:
        self.folder, self.close = folder, close

    def __enter__(self) -> Folder | None:
        return self.folder

    def __exit__(self, *_: object) -> None:
        if self.folder is not None and self.close:
            self.folder.close()


def _held(folder: Path | Folder) -> _Optional:
    if isinstance(folder, Folder):
        return _Optional(folder, close=False)
    try:
        return _Optional(Folder.at(folder))
    except DropdError:
        return _Optional(None)


def _sub(parent: Folder | None, name: str) -> _Optional:
    return _Optional(open_child(parent, name))


def _folders(parent: Folder | None) -> list[str]:
    if parent is None:
        return []
    try:
        with os.scandir(parent.fd) as entries:
            return [e.name for e in entries if e.is_dir(follow_symlinks=False)]
    except OSError:
        return []


@dataclass(frozen=True, slots=True)
class _Summary:
    """What status reads of a record dropd filed: each a non-empty text, or None."""

    finished: str | None
    step: str | None
    reason: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> _Summary:
        text = text_or_none
        return cls(text(data.get("finished")), text(data.get("step")), text(data.get("reason")))


def _record(batch: Folder | None, stem: str) -> _Summary | None:
    if batch is None:
        return None
    for name in record_names(stem):
        if (data := read_json(batch, name)) is not None:
            return _Summary.from_json(data)
    return None
