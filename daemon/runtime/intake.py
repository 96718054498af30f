"""A group's intake at run time: when its folder is looked at again, and the ready files of a
scan claimed into batches (a ZIP in a batch alone, a file dropd cannot take failed alone),
with the markers whose file never comes said once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from daemon.base import crashpoints
from daemon.base.errors import SpoolError
from daemon.base.names import quoted
from daemon.base.steps import Step
from daemon.config.model import DaemonSettings, DoneMarkers
from daemon.intake.readiness import (
    FileKind,
    FileSeen,
    ReadyFile,
    SettleTracker,
    orphan_markers,
    ready_files,
    unreadable,
)
from daemon.runtime.closing import BatchCloser
from daemon.runtime.health import GroupHealth
from daemon.runtime.line import GroupLine
from daemon.spool.manifest import Manifest
from daemon.spool.store import Spool

log = structlog.get_logger()


@dataclass(eq=False)
class GroupIntake:
    """Claims a group's ready files into its line's batches, scan after scan."""

    group: str  # the group's key, for the logs
    spool: Spool
    line: GroupLine
    closer: BatchCloser
    health: GroupHealth
    wall: Callable[[], datetime]
    refuse: Callable[[Manifest], None]  # ends a batch whose file failed at intake
    tracker: SettleTracker = field(default_factory=SettleTracker)
    dirty: bool = True  # something changed in the folder since the last scan
    next_scan: float = 0.0
    orphans: dict[str, tuple[float, bool]] = field(default_factory=dict)  # since, reported

    # -- when to look -----------------------------------------------------------------------

    def changed(self) -> None:
        """Something may have changed in the folder: look at it at the next visit."""
        self.dirty = True

    def due(self, now: float) -> bool:
        """True when the folder should be looked at now."""
        return self.dirty or now >= self.next_scan

    def scanning(self, next_scan: float) -> None:
        """A scan begins now; the next one comes at `next_scan` at the latest."""
        self.dirty = False
        self.next_scan = next_scan

    def hold_off(self, until: float) -> None:
        """Look at the folder again no sooner than `until`, whatever changed meanwhile."""
        self.dirty = False
        self.next_scan = until

    def wake_by(self, at: float) -> None:
        """Look at the folder again by `at`."""
        self.next_scan = min(self.next_scan, at)

    def set_timers(self, seen: list[FileSeen], now: float, daemon: DaemonSettings) -> None:
        """Wake for the next file to settle and the next marker to wait too long."""
        settle_at = self.tracker.next_settle_at(daemon.settle_seconds, after=now)
        if settle_at is not None:
            self.wake_by(settle_at)
        self._watch_orphans(orphan_markers(seen), now, daemon.max_wait_seconds)

    def _watch_orphans(self, orphans: list[str], now: float, max_wait: float) -> None:
        # A marker whose file never comes is said once, after max_wait, and left alone.
        self.orphans = {m: self.orphans.get(m, (now, False)) for m in orphans}
        for marker, (since, reported) in self.orphans.items():
            if reported:
                continue
            if now - since >= max_wait:
                log.warning(
                    "marker_orphaned",
                    group=self.group,
                    file=marker,
                    waited_seconds=round(now - since, 1),
                    reason=f"{marker} has no file beside it; dropd leaves it alone: "
                    "remove it if its file is not coming",
                )
                self.orphans[marker] = (since, True)
            else:
                self.wake_by(since + max_wait)

    # -- claims -----------------------------------------------------------------------------

    def take(
        self, seen: list[FileSeen], now: float, settle_seconds: float, markers: DoneMarkers
    ) -> bool:
        """Claim the files of a scan that are complete; False (and the group in Error) if
        the disk refused."""
        # Markers need no settling: they only make their file ready.
        self.tracker.observe([s for s in seen if s.kind is not FileKind.MARKER], now)
        return self._take_all(ready_files(seen, self.tracker, now, settle_seconds, markers), now)

    def _take_all(self, ready: list[ReadyFile], now: float) -> bool:
        joining = []
        try:
            for item in ready:
                self.tracker.forget(item.name)
                why = unreadable(self.spool.root.fd, item.name)
                if why is None and item.kind is FileKind.OTHER:
                    why = (
                        f"{quoted(item.name)} is not a file dropd uploads (only *.csv, "
                        "message.properties and *.zip are); rename it or drop it elsewhere"
                    )
                if why is not None:
                    self._fail_alone(item, why)
                elif item.kind is FileKind.ZIP:
                    self._batch_alone(item)
                else:
                    joining.append(item)
            self._join_open(joining, now)
        except SpoolError as exc:
            # Step `folder`, not `intake`: the next good scan clears it, while a batch that
            # failed at intake keeps the group in Error until a later batch goes up.
            self.health.set_error(Step.FOLDER, self.spool.show(str(exc)))
            self._sync_claims()
            return False
        return self._sync_claims()

    def _join_open(self, joining: list[ReadyFile], now: float) -> None:
        """Claim files into the open batch, in runs: the run's names and kinds go into the
        manifest first, then the renames; a name already in the batch starts the next one."""
        run: list[ReadyFile] = []
        for ready in joining:
            if not self.line.takes(ready.name):
                self._claim_run(run, now)
                run = []
                self.closer.close_open()
                manifest = self.spool.open_batch(self.wall())
                self.line.open_new(manifest.batch, now)
                log.info("batch_opened", group=self.group, batch=manifest.batch)
            self.line.reserve(ready.name)  # taken: a namesake in this run starts anew
            run.append(ready)
        self._claim_run(run, now)

    def _claim_run(self, run: list[ReadyFile], now: float) -> None:
        if not run:
            return
        assert self.line.open is not None
        batch_id = self.line.open.batch_id
        self.spool.intend(self.spool.load(batch_id), run)
        for ready in run:
            # Made durable once for the whole scan (`_sync_claims`), not once per file.
            if not self.spool.claim(batch_id, ready, sync=False):
                self.line.unreserve(ready.name)
                continue
            self.closer.claimed_into(batch_id)
            self.line.add(ready.name, now)
            crashpoints.reached("claimed")
            _claimed(self.group, batch_id, ready)

    def _sync_claims(self) -> bool:
        """fsync the batches this scan claimed into; False (the group in Error) if refused."""
        try:
            self.closer.sync_claims()
        except SpoolError as exc:
            self.health.set_error(Step.FOLDER, self.spool.show(str(exc)))
            return False
        return True

    def _batch_alone(self, ready: ReadyFile) -> None:
        manifest = self.spool.open_batch(self.wall())
        self.spool.intend(manifest, [ready])
        if self.spool.claim(manifest.batch, ready):
            crashpoints.reached("claimed")
            _claimed(self.group, manifest.batch, ready)
        self.closer.close_into_line(manifest.batch)

    def _fail_alone(self, ready: ReadyFile, reason: str) -> None:
        # The verdict is in the spool before the file is: a crash cannot change it.
        manifest = self.spool.open_batch(self.wall(), refused=reason)
        self.spool.intend(manifest, [ready])
        if not self.spool.claim(manifest.batch, ready):
            self.spool.discard_empty(manifest.batch)
            return
        crashpoints.reached("claimed")
        self.refuse(manifest)


def _claimed(group: str, batch_id: str, ready: ReadyFile) -> None:
    log.info(
        "file_claimed",
        group=group,
        batch=batch_id,
        file=ready.name,
        bytes=ready.size,
        markers=list(ready.markers),
    )
