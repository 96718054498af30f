"""One group at run time: scanning its folder, claiming ready files into batches, closing
them, recording their results. Its hold on the folder and spool (owner lock, watch, recovery,
adoption) is `ownership.py`'s; what its uploads need is made by `upload_setup.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from daemon.base import crashpoints
from daemon.base.errors import SecretError, SpoolError
from daemon.base.names import quoted
from daemon.base.timestamps import iso
from daemon.config.model import Config, DaemonSettings, Group
from daemon.delivery.outcome import BatchResult, ResultKind
from daemon.delivery.setup import build_delivery
from daemon.intake.readiness import (
    FileKind,
    ReadyFile,
    SettleTracker,
    orphan_markers,
    ready_files,
    scan_folder,
    unreadable,
)
from daemon.provider.tokens import TokenSource
from daemon.runtime.line import BatchTiming, OpenBatch
from daemon.runtime.ownership import GroupOwnership
from daemon.spool.store import Spool

log = structlog.get_logger()

RESCAN_SECONDS = 60.0  # a full rescan catches what events missed (overflow, other hosts)
CLOSE_RETRY_SECONDS = 2.0  # how soon a batch close the disk refused is tried again
FOLDER_RETRY_SECONDS = 2.0  # how often a folder in Error at step folder is looked at


@dataclass(eq=False)
class GroupWorker(GroupOwnership):
    """A group this dropd runs: what it owns (`GroupOwnership`), and the files on their way."""

    tracker: SettleTracker = field(default_factory=SettleTracker)
    dirty: bool = True
    next_scan: float = 0.0
    failures: int = 0  # consecutive waits and retries, for the backoff
    orphans: dict[str, tuple[float, bool]] = field(default_factory=dict)  # since, reported
    # Told every batch result, those of intake included (which never reach the upload
    # pool's `finished`): the metrics.
    on_result: Callable[[str, BatchResult], None] | None = None

    # -- intake -----------------------------------------------------------------------------

    def scan(self, now: float, daemon: DaemonSettings) -> None:
        """Look at the folder again and claim every file that is complete."""
        self.dirty = False
        every = daemon.poll_seconds or crashpoints.rescan_seconds(RESCAN_SECONDS)
        self.next_scan = now + every
        lost = self.spool.lost()
        if lost is not None:
            self.let_go(lost)
            return
        try:
            seen = scan_folder(self.spool.root.fd)
            self.adopt()
        except (OSError, SpoolError) as exc:
            self._folder_lost(exc)
            return
        self._watch()
        # Markers need no settling: they only make their file ready.
        self.tracker.observe([s for s in seen if s.kind is not FileKind.MARKER], now)
        mode = self.group.done_markers
        ready = ready_files(seen, self.tracker, now, daemon.settle_seconds, mode)
        taken = self._take_all(ready, now)
        layout = self.spool.layout_problems(self.wall())
        if layout:
            self.set_error("folder", layout[0])
        elif taken and self.error and self.error[0] == "folder":
            log.info("group_recovered", group=self.group.key, step=self.error[0])
            self.error = None
            # What waited for the folder goes on at once, not after its backoff.
            self.failures, self.line.not_before = 0, 0.0
        if self.error is not None and self.error[0] == "folder":
            # A person fixing a link may cause no event in the folders watched (sent/DATE).
            self.next_scan = min(self.next_scan, now + FOLDER_RETRY_SECONDS)
        settle_at = self.tracker.next_settle_at(daemon.settle_seconds, after=now)
        if settle_at is not None:
            self.next_scan = min(self.next_scan, settle_at)
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
                    group=self.group.key,
                    file=marker,
                    waited_seconds=round(now - since, 1),
                    reason=f"{marker} has no file beside it; dropd leaves it alone: "
                    "remove it if its file is not coming",
                )
                self.orphans[marker] = (since, True)
            else:
                self.next_scan = min(self.next_scan, since + max_wait)

    def _take_all(self, ready: list[ReadyFile], now: float) -> bool:
        """Claim the ready files; False (and the group in Error) if the disk refused."""
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
                    self._batch_alone(item, now)
                else:
                    joining.append(item)
            self._join_open(joining, now)
        except SpoolError as exc:
            # Step `folder`, not `intake`: the next good scan clears it, while a batch that
            # failed at intake keeps the group in Error until a later batch goes up.
            self.set_error("folder", self.spool.show(str(exc)))
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
                self.close_open()
                manifest = self.spool.open_batch(self.wall())
                self.line.open = OpenBatch(manifest.batch, now, now)
                log.info("batch_opened", group=self.group.key, batch=manifest.batch)
            assert self.line.open is not None
            self.line.open.names.add(ready.name)  # taken: a namesake in this run starts anew
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
                self.line.open.names.discard(ready.name)
                continue
            self.unsynced.add(batch_id)
            self.line.add(ready.name, now)
            crashpoints.reached("claimed")
            _claimed(self.group.key, batch_id, ready)

    def _sync_claims(self) -> bool:
        """fsync the batches this scan claimed into; False (the group in Error) if refused."""
        try:
            for batch_id in sorted(self.unsynced):
                self.spool.sync_claims(batch_id)
                self.unsynced.discard(batch_id)
        except SpoolError as exc:
            self.set_error("folder", self.spool.show(str(exc)))
            return False
        return True

    def _batch_alone(self, ready: ReadyFile, now: float) -> None:
        manifest = self.spool.open_batch(self.wall())
        self.spool.intend(manifest, [ready])
        if self.spool.claim(manifest.batch, ready):
            crashpoints.reached("claimed")
            _claimed(self.group.key, manifest.batch, ready)
        if self._close(manifest.batch):
            self.line.waiting.append(manifest.batch)

    def _fail_alone(self, ready: ReadyFile, reason: str) -> None:
        # The verdict is in the spool before the file is: a crash cannot change it.
        manifest = self.spool.open_batch(self.wall(), refused=reason)
        self.spool.intend(manifest, [ready])
        if not self.spool.claim(manifest.batch, ready):
            self.spool.discard_empty(manifest.batch)
            return
        crashpoints.reached("claimed")
        self.refuse(manifest)

    # -- batches ----------------------------------------------------------------------------

    def close_due(self, now: float, timing: BatchTiming) -> None:
        """Close the open batch once its quiet or max-wait window has passed."""
        if not self.line.due(now, timing):
            return
        assert self.line.open is not None
        try:
            self.close_open()
        except SpoolError as exc:
            # The batch stays open on disk, whole; the close is tried again shortly.
            self.line.open.not_before = now + CLOSE_RETRY_SECONDS
            self.set_error("spool", str(exc))
            return
        if self.error and self.error[0] == "spool":
            self.error = None

    def close_open(self) -> None:
        """Close the open batch and put it in line (state `claimed` on disk)."""
        if self.line.open is None:
            return
        if self._close(self.line.open.batch_id):
            self.line.close_open()
        else:
            self.line.open = None

    def next_deadline(self, timing: BatchTiming) -> float | None:
        """The next moment this group needs the scheduler."""
        times = [t for t in (self.line.next_deadline(timing), self.next_scan) if t is not None]
        if not self.owner:
            times.append(self.next_owner_try)
        return min(times) if times else None

    # -- results and settings ---------------------------------------------------------------

    def record(self, result: BatchResult, moment: datetime) -> None:
        """Keep what status needs from a batch's result."""
        if self.on_result is not None:
            self.on_result(self.group.key, result)
        if self.losing is not None:
            self.dirty = True  # the upload in flight is over: let go of the folder now
        if result.kind is ResultKind.SENT:
            self.last_upload = iso(moment)
            self.error = None
        elif result.kind is ResultKind.GONE:
            self.error = (result.step, result.reason)
        elif result.kind is ResultKind.FAILED:
            self.failed_batches += 1
            self.error = (result.step, result.reason)
        elif result.kind is ResultKind.HELD:
            # It left the line without failing; status shows it from `held` until it is gone.
            self.error = None
            if result.destination is not None:
                self.held[result.destination.name] = result.reason
        else:
            self.error = (result.step, result.reason)

    def take_settings(self, config: Config, tokens: TokenSource | SecretError) -> None:
        """A reload kept this group's folder: take its new settings and try again at once."""
        self.group = config.groups[self.group.key]
        memory = self.delivery.memory
        self.delivery = build_delivery(config, self.group, self.spool, tokens, self.wall, memory)
        self.failures = 0
        self.line.not_before = 0.0
        self.next_owner_try = 0.0
        self.dirty = True

    def may_send(self) -> bool:
        """False while the folder needs a person (a link where dropd files, a folder gone or
        replaced): the group's batches wait in the spool, nothing goes up or is filed."""
        folder_error = self.error is not None and self.error[0] == "folder"
        return self.owner and self.losing is None and not folder_error

    def files_waiting(self) -> int:
        """Files dropped and not yet sent or failed."""
        open_files = len(self.line.open.names) if self.line.open else 0
        queued = sum(self.batch_files.get(b, 0) for b in self.line.waiting)
        return self.tracker.watched() + open_files + queued


def _claimed(group: str, batch_id: str, ready: ReadyFile) -> None:
    log.info(
        "file_claimed",
        group=group,
        batch=batch_id,
        file=ready.name,
        bytes=ready.size,
        markers=list(ready.markers),
    )


def build_group(
    config: Config, group: Group, tokens: TokenSource | SecretError, wall: Callable[[], datetime]
) -> GroupWorker:
    """A group's run-time state: its spool, and what its uploads need."""
    spool = Spool(group.folder, group.key)
    return GroupWorker(group, build_delivery(config, group, spool, tokens, wall), spool, wall)
