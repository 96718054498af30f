"""Group status like the provider's integration tiles: Valid, Processing or Error, kept on disk."""

from __future__ import annotations

import enum
import os
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from daemon.base.durable import write_json_atomic
from daemon.base.log import REDACTOR
from daemon.base.names import shown
from daemon.base.records import TEXT_LIMIT, cut_text
from daemon.base.timestamps import iso, utc_now
from daemon.observe.liveness import start_ticks

if TYPE_CHECKING:
    from daemon.runtime.group import GroupWorker

log = structlog.get_logger()
STATUS_FILE = "status.json"
# Rewritten at least this often, so `dropd status` can tell a stuck daemon from a quiet one.
REFRESH_SECONDS = 30.0
# The daemon's start (this module is imported as it starts; a reload keeps it).
PROCESS_STARTED = utc_now()


class GroupState(enum.Enum):
    VALID = "Valid"
    PROCESSING = "Processing"
    ERROR = "Error"


def group_status(worker: GroupWorker) -> dict[str, Any]:
    """One group's status as the status file and `dropd status` show it."""
    if worker.error is not None:
        state, (step, reason) = GroupState.ERROR, worker.error
    elif worker.held:
        state, step, reason = GroupState.ERROR, "guard", held_summary(worker.held)
    else:
        busy = worker.line.in_flight or worker.line.waiting or worker.line.open
        state, step, reason = (GroupState.PROCESSING if busy else GroupState.VALID), "", ""
    return {
        "group": worker.group.key,
        "friendly_name": worker.group.friendly_name,
        "status": state.value,
        "step": step,
        "reason": reason,
        "role": "owner" if worker.owner else "standby",
        "last_upload": worker.last_upload,
        "files_waiting": worker.files_waiting(),
        "batches_failed": worker.failed_batches,
        "batches_held": len(worker.held),
    }


def held_summary(held: dict[str, str]) -> str:
    """The reason of the newest held batch, and how many more there are."""
    newest = max(held)
    more = len(held) - 1
    if not more:
        return held[newest]
    return f"{held[newest]} ({more} more held batch{'es' if more > 1 else ''} in held/)"


def _readable(entry: dict[str, Any]) -> dict[str, Any]:
    # The reason is the one text that comes from outside (a server's message, a file's
    # name): redacted and cut as in every record.
    if entry["reason"]:
        entry["reason"] = cut_text(shown(REDACTOR.redact_text(entry["reason"])), TEXT_LIMIT)
    return entry


class StatusWriter:
    """Writes `state_dir/status.json` atomically, when something changed or every
    `REFRESH_SECONDS`, with the process that wrote it (`pid`, its start) for `dropd status`."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / STATUS_FILE
        self._last: list[dict[str, Any]] | None = None
        self._written: datetime | None = None
        pid = os.getpid()
        self._process = {
            "pid": pid,
            "pid_start_ticks": start_ticks(pid),
            "started": iso(PROCESS_STARTED),
        }

    def write(self, workers: Iterable[GroupWorker], moment: datetime) -> None:
        groups = [_readable(group_status(w)) for w in workers]
        if groups == self._last and not self._refresh_due(moment):
            return
        data = {"updated": iso(moment), **self._process, "groups": groups}
        try:
            write_json_atomic(self.path, data)
        except OSError as exc:
            log.warning("status_not_written", path=str(self.path), reason=exc.strerror)
            return
        self._last, self._written = groups, moment

    def _refresh_due(self, moment: datetime) -> bool:
        if self._written is None:
            return True
        return abs((moment - self._written).total_seconds()) >= REFRESH_SECONDS
