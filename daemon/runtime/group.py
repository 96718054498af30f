"""One group at run time, as the scheduler and the upload pool see it: made of its hold on the
folder (`FolderLease`), the batches its spool holds put back in line (`Recovery`), its intake
(`GroupIntake`), its line (`GroupLine`) and what its status shows (`GroupHealth`). A visit is
told here in what order those parts act; each part decides its own.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import structlog

from daemon.base import crashpoints
from daemon.base.errors import FolderError, SecretError, SpoolError
from daemon.base.steps import Step
from daemon.config.model import Config, DaemonSettings, Group, NotifyEvent
from daemon.delivery.outcome import BatchResult, ResultKind, end_batch
from daemon.delivery.setup import Delivery, build_delivery
from daemon.intake.readiness import scan_folder
from daemon.intake.watch import FolderWatcher
from daemon.observe.alerts import Alert
from daemon.observe.snapshot import GroupSnapshot
from daemon.provider.tokens import TokenSource
from daemon.runtime.closing import BatchCloser
from daemon.runtime.health import GroupHealth
from daemon.runtime.intake import GroupIntake
from daemon.runtime.lease import FolderLease
from daemon.runtime.line import BatchTiming, GroupLine
from daemon.runtime.recovery import Recovery
from daemon.spool.manifest import Manifest
from daemon.spool.store import SPOOL_DIR, Spool

log = structlog.get_logger()

RESCAN_SECONDS = 60.0  # a full rescan catches what events missed (overflow, other hosts)
CLOSE_RETRY_SECONDS = 2.0  # how soon a batch close the disk refused is tried again
FOLDER_RETRY_SECONDS = 2.0  # how often a folder in Error at step folder is looked at
_TOLD = {ResultKind.FAILED: NotifyEvent.BATCH_FAILED, ResultKind.HELD: NotifyEvent.BATCH_HELD}


class GroupWorker:
    """A group this dropd runs: its folder, its spool, and the files on their way."""

    def __init__(
        self, group: Group, delivery: Delivery, spool: Spool, wall: Callable[[], datetime]
    ) -> None:
        self.group = group
        self.delivery = delivery
        self.spool = spool
        self.wall = wall
        key = group.key
        self.line = GroupLine()
        self.health = GroupHealth(key, tell=self._tell_group)
        self.closer = BatchCloser(key, spool, self.line, wall)
        self.lease = FolderLease(key, group.folder, spool, self.health)
        self.recovery = Recovery(key, spool, self.line, self.closer, self.health, self.refuse)
        self.intake = GroupIntake(
            key, spool, self.line, self.closer, self.health, wall, self.refuse
        )
        # Told every batch result, those of intake included (which never reach the upload
        # pool's `finished`): the metrics.
        self._on_result: Callable[[str, BatchResult], None] | None = None
        self._on_alert: Callable[[Alert], None] | None = None  # [notify]: see report_alerts_to

    def report_results_to(self, on_result: Callable[[str, BatchResult], None]) -> None:
        """Tell `on_result` every batch result from now on (the metrics count them)."""
        self._on_result = on_result

    def report_alerts_to(self, on_alert: Callable[[Alert], None]) -> None:
        """Tell `on_alert` what people should hear of from now on ([notify])."""
        self._on_alert = on_alert

    def _alert(self, event: NotifyEvent, step: str, reason: str, folder: Path | None) -> None:
        on_alert = self._on_alert
        if on_alert is not None:
            # A group's error is about the batch in flight, if one is.
            batch = folder.name if folder is not None else self.line.in_flight
            group = self.group
            on_alert(Alert(event, group.key, group.friendly_name, step, reason, batch, folder))

    def _tell_group(self, event: NotifyEvent, step: str, reason: str) -> None:
        self._alert(event, step, reason, None)

    @property
    def owner(self) -> bool:
        """True while this dropd holds the folder's lock."""
        return self.lease.owner

    # -- the folder -------------------------------------------------------------------------

    def take_ownership(self, now: float, watcher: FolderWatcher | None) -> None:
        """Take the folder's lock and recover its spool; stand by if another dropd has it."""
        if not self.lease.due(now):
            return
        self.lease.watch_with(watcher)
        folder_was_wrong = self.health.failing_at(Step.FOLDER)
        try:
            if not self.lease.take(now):
                return
            self.recovery.recover()
        except (SpoolError, OSError) as exc:
            self.lease.refused(exc)
            return
        if folder_was_wrong:
            self.health.back(Step.FOLDER)
        self.lease.watch()
        log.info(
            "group_owned",
            group=self.group.key,
            folder=str(self.group.folder),
            batches_recovered=len(self.line.waiting),
        )

    def watch_with(self, watcher: FolderWatcher | None) -> None:
        """Watch the folder with `watcher` from now on (None: it is polled)."""
        self.lease.watch_with(watcher)

    def let_go(self, reason: str) -> bool:
        """The folder held is no longer the group's (gone, replaced): say why, and once no
        upload is in flight let go of it (lock, descriptors, the line as it knew it), so
        that the next visit takes the folder now at the path, lock first. Its batches stay
        on disk where they are. True once it has let go."""
        self.lease.lost(reason)
        if self.line.in_flight is not None:
            return False  # it finishes in the folder it began in, through its descriptors
        left = self.line.batch_ids()
        where = self.lease.where()
        self.lease.let_go()
        self.line.clear()
        self.closer.forget()
        log.error(
            "group_folder_lost",
            group=self.group.key,
            folder=str(self.group.folder),
            reason=reason,
            batches_left=len(left),
            left_in=f"{where}/{SPOOL_DIR}/work" if left else None,
        )
        return True

    def stop_watching(self) -> None:
        """The group left the config: no more events (a new group may take its key)."""
        self.lease.stop_watching()

    def release(self) -> None:
        """Let go of the folder once nothing is in flight; its spool waits on disk."""
        self.lease.release()

    def unlock(self) -> None:
        """dropd stops: let go of the folder's lock; the spool has every batch."""
        self.spool.unlock()

    # -- a visit ----------------------------------------------------------------------------

    def changed(self) -> None:
        """Something happened in the folder, or it was just taken: look at it at once."""
        self.intake.changed()

    def scan_due(self, now: float) -> bool:
        """True when the folder should be looked at now."""
        return self.intake.due(now)

    def scan(self, now: float, daemon: DaemonSettings) -> None:
        """Look at the folder again and claim every file that is complete."""
        every = daemon.poll_seconds or crashpoints.rescan_seconds(RESCAN_SECONDS)
        self.intake.scanning(now + every)
        lost = self.spool.lost()
        if lost is not None:
            self.let_go(lost)
            return
        try:
            seen = scan_folder(self.spool.root.fd)
            self.recovery.adopt()
        except (OSError, SpoolError) as exc:
            self.lease.unreadable(exc)
            return
        self.lease.watch()
        taken = self.intake.take(seen, now, daemon.settle_seconds, self.group.done_markers)
        layout = self.spool.layout_problems(self.wall())
        if layout:
            self.health.set_error(Step.FOLDER, layout[0])
        elif taken and self.health.recovered(Step.FOLDER):
            # What waited for the folder goes on at once, not after its backoff.
            self.line.retry_now()
        if self.health.failing_at(Step.FOLDER):
            # A person fixing a link may cause no event in the folders watched (sent/DATE).
            self.intake.wake_by(now + FOLDER_RETRY_SECONDS)
        self.intake.set_timers(seen, now, daemon)

    def visit_failed(self, exc: Exception, retry_at: float) -> None:
        """A visit met a bug of dropd's: in Error, and left alone until `retry_at`."""
        self.health.set_error(
            Step.INTERNAL, f"dropd met an error of its own: {type(exc).__name__}: {exc}"
        )
        self.intake.hold_off(retry_at)

    def close_due(self, now: float, timing: BatchTiming) -> None:
        """Close the open batch once its quiet or max-wait window has passed."""
        if not self.line.due(now, timing):
            return
        try:
            self.close_open()
        except SpoolError as exc:
            # The batch stays open on disk, whole; the close is tried again shortly.
            self.line.delay_close(now + CLOSE_RETRY_SECONDS)
            self.health.set_error(Step.SPOOL, str(exc))
            return
        self.health.recovered(Step.SPOOL)

    def close_open(self) -> None:
        """Close the open batch and put it in line (state `claimed` on disk)."""
        self.closer.close_open()

    def next_deadline(self, timing: BatchTiming) -> float | None:
        """The next moment this group needs the scheduler."""
        times = [
            t for t in (self.line.next_deadline(timing), self.intake.next_scan) if t is not None
        ]
        if not self.owner:
            times.append(self.lease.next_try)
        return min(times) if times else None

    # -- uploads ----------------------------------------------------------------------------

    def may_send(self) -> bool:
        """False while the folder needs a person (a link where dropd files, a folder gone or
        replaced): the group's batches wait in the spool, nothing goes up or is filed."""
        return self.owner and self.lease.losing is None and not self.health.failing_at(Step.FOLDER)

    def next_upload(self, now: float) -> str | None:
        """The batch to upload now, if one may go: it is in flight from here on."""
        batch_id = self.line.next_to_send(now)
        if batch_id is None or not self.may_send():
            return None
        self.line.start(batch_id)
        return batch_id

    def upload_ended(self, batch_id: str) -> None:
        """The batch in flight was sent, failed, held or is gone: it leaves the line."""
        self.line.finish(batch_id)

    def upload_waits(self, delay: Callable[[int], float], now: float) -> float:
        """The batch in flight waits at the head of the line: for `delay(attempt)` seconds,
        `attempt` counting the waits in a row from 1. Returns the seconds."""
        seconds = delay(self.line.failed())
        self.line.retry_later(now + seconds)
        return seconds

    def in_flight(self) -> str | None:
        """The batch being uploaded, if any."""
        return self.line.in_flight

    # -- results and settings ---------------------------------------------------------------

    def refuse(self, manifest: Manifest) -> None:
        """End a batch whose one file fails at step intake (its reason is in the manifest):
        to failed/ now, or, where failed/ cannot take it, in line to be filed later."""
        assert manifest.refused is not None
        if not self.spool.file_count(manifest.batch):
            self.closer.close(manifest.batch)  # the file vanished before its claim: nothing to do
            return
        try:
            result = end_batch(self.delivery, manifest, Step.INTAKE, manifest.refused)
        except FolderError as exc:
            # Filed by its delivery, once fixed.
            self.line.enqueue(manifest.batch, self.spool.file_count(manifest.batch))
            self.health.set_error(Step.FOLDER, exc.reason)
            return
        self.record(result, self.wall())

    def record(self, result: BatchResult, moment: datetime) -> None:
        """Keep what status needs from a batch's result."""
        if self._on_result is not None:
            self._on_result(self.group.key, result)
        if result.kind in _TOLD and result.destination is not None:
            event = _TOLD[result.kind]
            self._alert(event, result.step or "", result.reason, result.destination)
        if self.lease.losing is not None:
            self.changed()  # the upload in flight is over: let go of the folder now
        self.health.record(result, moment)

    def take_settings(self, config: Config, tokens: TokenSource | SecretError) -> None:
        """A reload kept this group's folder: take its new settings and try again at once."""
        self.group = config.groups[self.group.key]
        memory = self.delivery.memory
        self.delivery = build_delivery(config, self.group, self.spool, tokens, self.wall, memory)
        self.line.retry_now()
        self.lease.try_again_now()
        self.changed()

    def files_waiting(self) -> int:
        """Files dropped and not yet sent or failed."""
        return self.intake.tracker.watched() + self.line.files_waiting()

    def snapshot(self) -> GroupSnapshot:
        """The group as status, metrics and STATUS= show it now."""
        line = self.line
        return GroupSnapshot(
            group=self.group.key,
            friendly_name=self.group.friendly_name,
            owner=self.owner,
            error=self.health.error,
            held=tuple(sorted(self.health.held.items())),
            last_upload=self.health.last_upload,
            failed_batches=self.health.failed_batches,
            error_batch=self.health.error_batch,
            last_failed=self.health.last_failed,
            files_seen=self.intake.tracker.watched(),
            files_waiting=self.files_waiting(),
            open_batch=line.open.batch_id if line.open else None,
            # The batch in flight heads the line until it ends: it is counted there, once.
            batches_in_line=len(line.waiting),
            in_flight=line.in_flight,
        )


def build_group(
    config: Config,
    group: Group,
    tokens: TokenSource | SecretError,
    wall: Callable[[], datetime],
) -> GroupWorker:
    """A group's run-time state: its spool, and what its uploads need."""
    spool = Spool(group.folder, group.key)
    delivery = build_delivery(config, group, spool, tokens, wall)
    return GroupWorker(group, delivery, spool, wall)
