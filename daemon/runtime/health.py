"""What a group's status shows of how it goes: the problem that needs a person now (the step
and why), the batches failed and held, and the last upload. Kept from the batches' results
and from what sent/, failed/ and held/ hold after a restart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import structlog

from daemon.base.folders import Folder
from daemon.base.steps import Step
from daemon.base.timestamps import iso
from daemon.delivery.outcome import BatchResult, ResultKind
from daemon.spool.history import FolderHistory, held_batches

log = structlog.get_logger()


@dataclass(eq=False)
class GroupHealth:
    """A group's problem, if any, and its record of batches; changed only by its methods."""

    group: str  # the group's key, for the logs
    error: tuple[str, str] | None = None  # (step, reason) while something needs a person
    failed_batches: int = 0
    last_upload: str | None = None
    held: dict[str, str] = field(default_factory=dict)  # batch -> reason, as held/ has them

    def set_error(self, step: str, reason: str) -> None:
        """Something at `step` needs a person: said once, shown until it is cleared."""
        if self.error != (step, reason):
            log.error("group_error", group=self.group, step=step, reason=reason)
        self.error = (step, reason)

    def failing_at(self, step: str) -> bool:
        """True while the group's problem is at `step`."""
        return self.error is not None and self.error[0] == step

    def clear(self, step: str) -> bool:
        """The problem at `step`, if that is the group's problem, is over; True if it was."""
        if not self.failing_at(step):
            return False
        self.error = None
        return True

    def recovered(self, step: str) -> bool:
        """Like `clear`, and says `group_recovered` when there was a problem to clear."""
        if not self.clear(step):
            return False
        log.info("group_recovered", group=self.group, step=step)
        return True

    def record(self, result: BatchResult, moment: datetime) -> None:
        """Keep what status needs from a batch's result."""
        step = result.step or ""  # every result but a sent batch's has its step
        if result.kind is ResultKind.SENT:
            self.last_upload = iso(moment)
            self.error = None
        elif result.kind is ResultKind.FAILED:
            self.failed_batches += 1
            self.error = (step, result.reason)
        elif result.kind is ResultKind.HELD:
            # It left the line without failing; status shows it from `held` until it is gone.
            self.error = None
            if result.destination is not None:
                self.held[result.destination.name] = result.reason
        else:
            self.error = (step, result.reason)

    def restore(self, past: FolderHistory, root: Folder) -> None:
        """What status shows outlives a restart: sent/, failed/ and held/ hold it."""
        self.failed_batches, self.last_upload = past.failed_batches, past.last_upload
        if self.error is None or self.failing_at(Step.FOLDER):
            self.error = past.last_failure
        self.held = held_batches(root)

    def look_at_held(self, root: Folder) -> None:
        """Forget the held batches that left held/ (released, or removed by a person)."""
        # One stat where held/ has never been made: every poll of every group comes here.
        if self.held or root.entry_identity("held") is not None:
            self.held = held_batches(root, self.held)
