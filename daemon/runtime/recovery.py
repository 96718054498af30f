"""The batches a group's spool holds, put back in its line: every one at start (recovered),
those that appear while dropd runs (adopted: `dropd retry`, `dropd release`), and an open
one closed on disk as it is found (a crash came before its close).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import structlog

from daemon.intake.readiness import FileKind, classify
from daemon.runtime.closing import BatchCloser
from daemon.runtime.health import GroupHealth
from daemon.runtime.line import GroupLine
from daemon.spool.history import folder_history
from daemon.spool.manifest import BatchState, Manifest
from daemon.spool.requeue import finish_staged
from daemon.spool.store import Spool

log = structlog.get_logger()


@dataclass(eq=False)
class Recovery:
    """Puts the batches found in a group's spool in its line, in line order."""

    group: str  # the group's key, for the logs
    spool: Spool
    line: GroupLine
    closer: BatchCloser
    health: GroupHealth
    refuse: Callable[[Manifest], None]  # ends a batch whose file failed at intake

    def recover(self) -> None:
        """Put every batch found in the spool back in line, in line order; close open ones."""
        for batch_id in self.spool.clear_unfinished_folders():
            log.warning("batch_folder_adopted", group=self.group, batch=batch_id)
        for batch_id in finish_staged(self.spool):
            log.warning("batch_requeue_finished", group=self.group, batch=batch_id)
        self._enqueue(self.spool.batch_ids(), "batch_recovered")
        self._reunite_markers()
        self.health.restore(folder_history(self.spool.root), self.spool.root)

    def _reunite_markers(self) -> None:
        top = [n for n in self.spool.root.names() if classify(n) is FileKind.MARKER]
        if not top:
            return
        for batch_id in [*self.line.waiting]:
            for marker in self.spool.reunite_markers(batch_id, top):
                log.warning("marker_reunited", group=self.group, batch=batch_id, file=marker)

    def adopt(self) -> None:
        """Put in line the batches that appeared in the spool (`dropd retry`, `release`), and
        forget the held and failed batches that left held/ and failed/ (released, retried,
        or removed by a person)."""
        known = self.line.known()
        adopted = self._spool_has_new(known)
        if adopted:
            self._enqueue([b for b in self.spool.batch_ids() if b not in known], "batch_adopted")
        self.health.look_at_held(self.spool.root)
        # A batch `dropd retry` put back left failed/: count it out however fast that came.
        self.health.look_at_failed(self.spool.root, recount=adopted)

    def _spool_has_new(self, known: set[str]) -> bool:
        # One listing per scan; the manifests are looked for only when a name is new.
        names = self.spool.work_folder.names()
        return any(n not in known and not n.startswith(".") for n in names)

    def _enqueue(self, batch_ids: list[str], event: str) -> None:
        manifests = sorted(
            (self.spool.load(b) for b in batch_ids), key=lambda m: (m.queued or m.created, m.batch)
        )
        for manifest in manifests:
            if manifest.refused is not None and manifest.state is BatchState.OPEN:
                self.refuse(manifest)  # its file failed at intake before a crash
                continue
            if manifest.state is BatchState.OPEN:
                # Claimed by a process that may not have synced its claims.
                self.closer.claimed_into(manifest.batch)
                self.closer.close_into_line(manifest.batch)
                continue
            count = self.spool.file_count(manifest.batch)
            self.line.enqueue(manifest.batch, count)
            log.info(
                event,
                group=self.group,
                batch=manifest.batch,
                state=manifest.state.value,
                files=count,
            )
