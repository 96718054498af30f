"""Group status like the provider's integration tiles: Valid, Processing or Error, kept on disk."""

from __future__ import annotations

import enum
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from daemon.base.durable import write_json_atomic
from daemon.base.log import REDACTOR
from daemon.base.names import shown
from daemon.base.records import TEXT_LIMIT, cut_text
from daemon.base.steps import Step
from daemon.base.timestamps import iso
from daemon.observe.liveness import start_ticks
from daemon.observe.snapshot import GroupSnapshot

log = structlog.get_logger()
STATUS_FILE = "status.json"
# Rewritten at least this often, so `dropd status` can tell a stuck daemon from a quiet one.
REFRESH_SECONDS = 30.0


class GroupState(enum.StrEnum):
    VALID = "Valid"
    PROCESSING = "Processing"
    ERROR = "Error"


@dataclass(frozen=True, slots=True)
class GroupStatus:
    """One group's entry in status.json, as `dropd status` shows it."""

    group: str
    friendly_name: str
    status: str  # a GroupState's value (`dropd status` adds Unknown)
    step: str  # the step that failed while in Error, else ""
    reason: str
    role: str | None  # owner or standby; None where not known
    last_upload: str | None
    files_waiting: int | None
    batches_failed: int | None
    batches_held: int | None
    batch: str | None = None  # the batch the Error is about: the failed or the newest held one
    last_failed: str | None = None  # the newest batch in failed/, whatever the status

    def to_json(self) -> dict[str, Any]:
        """The entry as status.json holds it."""
        return {
            "group": self.group,
            "friendly_name": self.friendly_name,
            "status": self.status,
            "step": self.step,
            "reason": self.reason,
            "role": self.role,
            "last_upload": self.last_upload,
            "files_waiting": self.files_waiting,
            "batches_failed": self.batches_failed,
            "batches_held": self.batches_held,
            "batch": self.batch,
            "last_failed": self.last_failed,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GroupStatus:
        """An entry read from status.json; a value of the wrong type reads as unknown."""
        return cls(
            group=str(data.get("group")),
            friendly_name=_text(data.get("friendly_name")),
            status=_text(data.get("status")),
            step=_text(data.get("step")),
            reason=_text(data.get("reason")),
            role=_text_or_none(data.get("role")),
            last_upload=_text_or_none(data.get("last_upload")),
            files_waiting=_int_or_none(data.get("files_waiting")),
            batches_failed=_int_or_none(data.get("batches_failed")),
            # A status file written before held/ was counted has none.
            batches_held=_int_or_none(data.get("batches_held", 0)),
            batch=_text_or_none(data.get("batch")),
            last_failed=_text_or_none(data.get("last_failed")),
        )


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def group_status(group: GroupSnapshot) -> GroupStatus:
    """One group's status as the status file and `dropd status` show it."""
    batch = None
    if group.error is not None:
        state, (step, reason), batch = GroupState.ERROR, group.error, group.error_batch
    elif group.held:
        state, step, reason = GroupState.ERROR, Step.GUARD, held_summary(dict(group.held))
        batch = max(batch_id for batch_id, _ in group.held)
    else:
        state, step, reason = (GroupState.PROCESSING if group.busy else GroupState.VALID), "", ""
    return GroupStatus(
        group=group.group,
        friendly_name=group.friendly_name,
        status=state.value,
        step=str(step),
        reason=reason,
        role="owner" if group.owner else "standby",
        last_upload=group.last_upload,
        files_waiting=group.files_waiting,
        batches_failed=group.failed_batches,
        batches_held=group.batches_held,
        batch=batch,
        last_failed=group.last_failed,
    )


def held_summary(held: dict[str, str]) -> str:
    """The reason of the newest held batch, and how many more there are."""
    newest = max(held)
    more = len(held) - 1
    if not more:
        return held[newest]
    return f"{held[newest]} ({more} more held batch{'es' if more > 1 else ''} in held/)"


def _readable(entry: GroupStatus) -> GroupStatus:
    # The reason is the one text that comes from outside (a server's message, a file's
    # name): redacted and cut as in every record.
    if not entry.reason:
        return entry
    return replace(entry, reason=cut_text(shown(REDACTOR.redact_text(entry.reason)), TEXT_LIMIT))


class StatusWriter:
    """Writes `state_dir/status.json` atomically, when something changed or every
    `REFRESH_SECONDS`, with the process that wrote it (`pid`, its start) for `dropd status`."""

    def __init__(self, state_dir: Path, started: datetime) -> None:
        """`started`: when this dropd started (a reload keeps it)."""
        self.path = state_dir / STATUS_FILE
        self._last: list[GroupStatus] | None = None
        self._written: datetime | None = None
        pid = os.getpid()
        self._process = {"pid": pid, "pid_start_ticks": start_ticks(pid), "started": iso(started)}

    def write(self, groups: Iterable[GroupSnapshot], moment: datetime) -> None:
        entries = [_readable(group_status(g)) for g in groups]
        if entries == self._last and not self._refresh_due(moment):
            return
        data = {
            "updated": iso(moment),
            **self._process,
            "groups": [entry.to_json() for entry in entries],
        }
        try:
            write_json_atomic(self.path, data)
        except OSError as exc:
            log.warning("status_not_written", path=str(self.path), reason=exc.strerror)
            return
        self._last, self._written = entries, moment

    def _refresh_due(self, moment: datetime) -> bool:
        if self._written is None:
            return True
        return abs((moment - self._written).total_seconds()) >= REFRESH_SECONDS
