"""What a group's status shows of how it goes: the problem that needs a person now (the step
and why), the batches failed and held, and the last upload. Kept from the batches' results
and from what sent/, failed/ and held/ hold after a restart.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from daemon.base.folders import Folder
from daemon.base.steps import Step
from daemon.base.timestamps import iso
from daemon.config.model import NotifyEvent
from daemon.delivery.outcome import BatchResult, ResultKind
from daemon.spool.history import FolderHistory, failed_batch_ids, held_batches

log = structlog.get_logger()


def _tell_nobody(event: NotifyEvent, step: str, reason: str) -> None:
    """Where a group's errors and recoveries go when nobody is to be told."""


@dataclass(eq=False)
class GroupHealth:
    """A group's problem, if any, and its record of batches; changed only by its methods."""

    group: str  # the group's key, for the logs
    error: tuple[str, str] | None = None  # (step, reason) while something needs a person
    error_batch: str | None = None  # the failed batch `error` is about, when it is one's
    failed_batches: int = 0  # batch folders in failed/ now
    last_failed: str | None = None  # the newest of them
    last_upload: str | None = None
    held: dict[str, str] = field(default_factory=dict)  # batch -> reason, as held/ has them
    # failed/ as it was when last counted: a change of it (a retry, a person's rm) recounts.
    _failed_seen: tuple[int, int, int] | None = field(default=None, init=False, repr=False)
    # Told each group_error and group_recovered ([notify]), once a change, never at each look.
    tell: Callable[[NotifyEvent, str, str], None] = field(default=_tell_nobody, repr=False)
    told: tuple[str, str] | None = field(default=None, init=False, repr=False)

    def set_error(self, step: str, reason: str) -> None:
        """Something at `step` needs a person: said once, shown until it is cleared."""
        if self.error != (step, reason):
            log.error("group_error", group=self.group, step=step, reason=reason)
            self._tell_error(step, reason)
        self.error, self.error_batch = (step, reason), None

    def failing_at(self, step: str) -> bool:
        """True while the group's problem is at `step`."""
        return self.error is not None and self.error[0] == step

    def clear(self, step: str) -> bool:
        """The problem at `step`, if that is the group's problem, is over; True if it was."""
        if not self.failing_at(step):
            return False
        self.error, self.error_batch = None, None
        return True

    def recovered(self, step: str) -> bool:
        """Like `clear`, and says `group_recovered` when there was a problem to clear."""
        if not self.clear(step):
            return False
        self.back(step)
        return True

    def back(self, step: str) -> None:
        """The group's problem at `step` is over: say `group_recovered` (and tell it)."""
        log.info("group_recovered", group=self.group, step=step)
        self._tell_over()

    def _tell_error(self, step: str, reason: str) -> None:
        if self.told != (step, reason):
            self.told = (step, reason)
            self.tell(NotifyEvent.GROUP_ERROR, step, reason)

    def _tell_over(self) -> None:
        if self.told is not None:
            step, self.told = self.told[0], None
            self.tell(NotifyEvent.GROUP_RECOVERED, step, "")

    def record(self, result: BatchResult, moment: datetime) -> None:
        """Keep what status needs from a batch's result."""
        step = result.step or ""  # every result but a sent batch's has its step
        self.error_batch = None
        if result.kind is ResultKind.SENT:
            self.last_upload = iso(moment)
            self.error = None
            if self.told is not None:  # what people were told of is over: a batch went up
                self.back(self.told[0])
        elif result.kind is ResultKind.FAILED:
            self.failed_batches += 1
            self._failed_seen = None  # counted here; the next look lists failed/ again
            self.error = (step, result.reason)
            if result.destination is not None:
                self.error_batch = self.last_failed = result.destination.name
        elif result.kind is ResultKind.HELD:
            # It left the line without failing; status shows it from `held` until it is gone.
            self.error = None
            if result.destination is not None:
                self.held[result.destination.name] = result.reason
        else:
            # Waiting for a person (a token refused, a full disk) is said once, as set_error
            # says it; a RETRY may work by itself and is not.
            if result.kind is ResultKind.WAIT and self.error != (step, result.reason):
                log.error("group_error", group=self.group, step=step, reason=result.reason)
                self._tell_error(step, result.reason)
            self.error = (step, result.reason)

    def restore(self, past: FolderHistory, root: Folder) -> None:
        """What status shows outlives a restart: sent/, failed/ and held/ hold it."""
        self.failed_batches, self.last_upload = past.failed_batches, past.last_upload
        self.last_failed, self._failed_seen = past.newest_failed, None
        if self.error is None or self.failing_at(Step.FOLDER):
            self.error = past.last_failure
            self.error_batch = past.newest_failed if past.last_failure else None
        self.held = held_batches(root)

    def look_at_held(self, root: Folder) -> None:
        """Forget the held batches that left held/ (released, or removed by a person)."""
        # One stat where held/ has never been made: every poll of every group comes here.
        if self.held or root.entry_identity("held") is not None:
            self.held = held_batches(root, self.held)

    def look_at_failed(self, root: Folder, *, recount: bool = False) -> None:
        """Count failed/ again when it changed (`dropd retry` took a batch out, a person
        removed one) or `recount` says so: the count is what failed/ holds now. When the
        failed batch the group's Error is about has left failed/, that Error is over."""
        if not self.failed_batches:
            return  # only dropd puts batches there, and it counts those itself
        seen = _entry_state(root, "failed")
        if seen == self._failed_seen and not recount:
            return
        names = failed_batch_ids(root)
        self._failed_seen = seen
        self.failed_batches = len(names)
        self.last_failed = names[-1] if names else None
        if self.error_batch is not None and self.error_batch not in names:
            # Retried (back in line, the status says Processing) or removed by a person.
            self.error, self.error_batch = None, None


def _entry_state(root: Folder, name: str) -> tuple[int, int, int] | None:
    # A folder's mtime changes whenever an entry is added to it or taken out of it.
    try:
        info = os.stat(name, dir_fd=root.fd, follow_symlinks=False)
    except OSError:
        return None
    return info.st_dev, info.st_ino, info.st_mtime_ns
