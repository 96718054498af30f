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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_BATCH_ID = re.compile(r"\d{8}T\d{6}\.\d{6}Z-[0-9a-f]+")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True, slots=True)
class FolderHistory:
    failed_batches: int = 0  # batch folders now in failed/ (`dropd retry` takes one out)
    last_upload: str | None = None  # `finished` of the newest receipt in sent/
    last_failure: tuple[str, str] | None = None  # (step, reason) if the newest batch failed


def folder_history(folder: Path) -> FolderHistory:
    """Read sent/ and failed/ of a group folder; a part that cannot be read counts as empty."""
    failed = batch_names(folder / "failed")
    sent = newest_sent(folder / "sent")
    last_upload = None if sent is None else _field(_record(sent, "receipt"), "finished")
    last_failure = None
    # The newest batch that ended decides: a batch held after a failure is newer news.
    newer = max([sent.name if sent else "", *batch_names(folder / "held")[-1:]])
    if failed and failed[-1] > newer:
        last_failure = failure_of(folder / "failed" / failed[-1])
    return FolderHistory(len(failed), last_upload, last_failure)


def held_batches(folder: Path, known: Mapping[str, str] | None = None) -> dict[str, str]:
    """The batches in the group folder's held/, oldest first, each with its held.json's
    reason; a reason in `known` is kept, so only a batch new to held/ has its record read."""
    known = known or {}
    return {
        name: known.get(name) or _held_reason(folder / "held" / name)
        for name in batch_names(folder / "held")
    }


def _held_reason(batch: Path) -> str:
    reason = _field(_record(batch, "held"), "reason")
    return reason or (
        f"batch {batch.name} is held in {batch}, which has no readable held.json; "
        "`dropd release` it or remove the folder"
    )


def batch_names(parent: Path) -> list[str]:
    """The batch folders in `parent`, oldest first; [] if it cannot be listed."""
    return sorted(n for n in _folders(parent) if _BATCH_ID.fullmatch(n))


def newest_sent(sent: Path) -> Path | None:
    """The newest batch folder under `sent/YYYY-MM-DD/` that holds a receipt."""
    for day in sorted((d for d in _folders(sent) if _DAY.fullmatch(d)), reverse=True):
        for batch in reversed(batch_names(sent / day)):
            if _record(sent / day / batch, "receipt") is not None:
                return sent / day / batch
    return None


def failure_of(batch: Path) -> tuple[str, str]:
    """The step and reason of a failed batch, from its error.json."""
    record = _record(batch, "error")
    if record is None:
        return "unknown", f"batch {batch.name} failed; {batch} has no readable error.json"
    reason = _field(record, "reason") or f"batch {batch.name} failed; see {batch}"
    return _field(record, "step") or "unknown", reason


def _folders(parent: Path) -> list[str]:
    try:
        with os.scandir(parent) as entries:
            return [e.name for e in entries if e.is_dir(follow_symlinks=False)]
    except OSError:
        return []


def _record(batch: Path, stem: str) -> dict[str, Any] | None:
    # Where a dropped file bore the record's name, dropd's own is STEM.dropd.json.
    for name in (f"{stem}.dropd.json", f"{stem}.json"):
        try:
            data = json.loads((batch / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            return data
    return None


def _field(record: dict[str, Any] | None, key: str) -> str | None:
    value = (record or {}).get(key)
    return value if isinstance(value, str) and value else None
