"""Closing a group's batch on disk: its claims made durable, then its manifest marked
`claimed` and the batch put in line, or an empty one discarded. Keeps which batches were
claimed into and not yet synced, so that each folder is synced once a scan, not once a file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from daemon.base import crashpoints
from daemon.base.timestamps import iso_precise
from daemon.runtime.line import GroupLine
from daemon.spool.manifest import BatchState
from daemon.spool.store import Spool

log = structlog.get_logger()


@dataclass(eq=False)
class BatchCloser:
    """Closes a group's batches in its spool and puts them in its line."""

    group: str  # the group's key, for the logs
    spool: Spool
    line: GroupLine
    wall: Callable[[], datetime]
    unsynced: set[str] = field(default_factory=set)  # batches claimed into, not yet fsynced

    def claimed_into(self, batch_id: str) -> None:
        """A file was claimed into `batch_id` without an fsync (or maybe so, before a crash)."""
        self.unsynced.add(batch_id)

    def sync_claims(self) -> None:
        """fsync the batches claimed into since the last sync. Raises SpoolError if refused."""
        for batch_id in sorted(self.unsynced):
            self.spool.sync_claims(batch_id)
            self.unsynced.discard(batch_id)

    def close_open(self) -> None:
        """Close the line's open batch and put it in line (state `claimed` on disk)."""
        if self.line.open is None:
            return
        files = self.close(self.line.open.batch_id)
        if files:
            self.line.close_open(files)
        else:
            self.line.drop_open()

    def close_into_line(self, batch_id: str) -> None:
        """Close `batch_id` and put it at the back of the line, unless it was empty."""
        files = self.close(batch_id)
        if files:
            self.line.enqueue(batch_id, files)

    def close(self, batch_id: str) -> int:
        """Record a batch as closed on disk; returns its files, 0 if it was empty and is gone."""
        count = self.spool.file_count(batch_id)
        if count == 0:
            # Every file of it vanished before its claim: nothing to send, nothing to keep.
            self.spool.discard_empty(batch_id)
            self.unsynced.discard(batch_id)
            log.info("batch_discarded", group=self.group, batch=batch_id, reason="empty")
            return 0
        # Its claims are durable before the manifest that acts on them says `claimed` (the
        # scan that claimed them has synced them, unless a repeated name closes the batch mid-scan).
        if batch_id in self.unsynced:
            self.spool.sync_claims(batch_id)
            self.unsynced.discard(batch_id)
        manifest = self.spool.load(batch_id)
        manifest.state = BatchState.CLAIMED
        manifest.queued = iso_precise(self.wall())
        self.spool.save(manifest)
        crashpoints.reached("closed")
        log.info(
            "batch_closed",
            group=self.group,
            batch=batch_id,
            files=count,
            position=len(self.line.waiting) + 1,
        )
        return count

    def forget(self) -> None:
        """The folder was let go: its batches stay on disk as they are."""
        self.unsynced.clear()
