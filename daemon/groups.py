"""One group at run time: ownership, recovery of its spool, scanning, claiming, closing batches."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from daemon import api, crashpoints
from daemon.auth import TokenSource, ignore_fetch, read_secret
from daemon.batch import BatchTiming, GroupLine, OpenBatch
from daemon.config import Config, DaemonSettings, Group
from daemon.delivery import BatchResult, Delivery, DeliveryMemory, ResultKind, end_batch
from daemon.errors import SecretError, SpoolError
from daemon.history import folder_history, held_batches
from daemon.intake import (
    FileKind,
    ReadyFile,
    SettleTracker,
    classify,
    orphan_markers,
    ready_files,
    scan_folder,
)
from daemon.requeue import finish_staged
from daemon.spool import BatchState, Spool, iso, iso_precise
from daemon.watch import FolderWatcher

log = structlog.get_logger()

RESCAN_SECONDS = 60.0  # a full rescan catches what events missed (overflow, other hosts)
STANDBY_RETRY_SECONDS = 2.0  # how often a standby dropd tries the owner lock
CLOSE_RETRY_SECONDS = 2.0  # how soon a batch close the disk refused is tried again


@dataclass(eq=False)
class GroupWorker:
    group: Group
    delivery: Delivery
    spool: Spool
    wall: Callable[[], datetime]
    tracker: SettleTracker = field(default_factory=SettleTracker)
    line: GroupLine = field(default_factory=GroupLine)
    owner: bool = False
    standby_logged: bool = False
    next_owner_try: float = 0.0
    dirty: bool = True
    next_scan: float = 0.0
    error: tuple[str, str] | None = None  # (step, reason) while something needs a person
    failures: int = 0  # consecutive waits and retries, for the backoff
    failed_batches: int = 0
    held: dict[str, str] = field(default_factory=dict)  # batch -> reason, as held/ has them
    last_upload: str | None = None
    batch_files: dict[str, int] = field(default_factory=dict)
    orphans: dict[str, tuple[float, bool]] = field(default_factory=dict)  # since, reported
    unsynced: set[str] = field(default_factory=set)  # batches claimed into, not yet fsynced
    watcher: FolderWatcher | None = None
    # Told every batch result, those of intake included (which never reach the scheduler's
    # `_finished`): the metrics.
    on_result: Callable[[str, BatchResult], None] | None = None

    # -- ownership and recovery -------------------------------------------------------------

    def take_ownership(self, now: float, watcher: FolderWatcher | None) -> None:
        """Take the folder's lock and recover its spool; stand by if another dropd has it."""
        if now < self.next_owner_try:
            return
        self.next_owner_try = now + STANDBY_RETRY_SECONDS
        self.watcher = watcher
        try:
            if not self.spool.try_lock():
                self._standby()
                return
            self.owner = True
            self.recover()
        except (SpoolError, OSError) as exc:
            self.set_error("folder", f"{self.group.folder}: {_reason(exc)}")
            return
        self._watch()
        log.info(
            "group_owned",
            group=self.group.key,
            folder=str(self.group.folder),
            batches_recovered=len(self.line.waiting),
        )

    def _standby(self) -> None:
        if not self.standby_logged:
            log.warning(
                "group_standby",
                group=self.group.key,
                folder=str(self.group.folder),
                reason="another dropd holds the folder's lock; taking over when it goes",
            )
            self.standby_logged = True

    def _watch(self) -> None:
        if self.watcher is None or self.watcher.watching(self.group.key):
            return
        try:
            # The spool too: `dropd retry` puts a batch back there while we run.
            self.watcher.watch(self.group.key, self.group.folder, self.spool.work)
        except OSError as exc:
            log.warning(
                "watch_failed",
                group=self.group.key,
                reason=_reason(exc),
                fix="raise fs.inotify.max_user_watches or set poll_seconds",
            )

    def recover(self) -> None:
        """Put every batch found in the spool back in line, in line order; close open ones."""
        for batch_id in self.spool.clear_unfinished_folders():
            log.warning("batch_folder_adopted", group=self.group.key, batch=batch_id)
        for batch_id in finish_staged(self.spool):
            log.warning("batch_requeue_finished", group=self.group.key, batch=batch_id)
        self._enqueue(self.spool.batch_ids(), "batch_recovered")
        self._reunite_markers()
        # What status shows outlives a restart: sent/ and failed/ hold it.
        past = folder_history(self.group.folder)
        self.failed_batches, self.last_upload = past.failed_batches, past.last_upload
        self.error = self.error or past.last_failure
        self.held = held_batches(self.group.folder)

    def _reunite_markers(self) -> None:
        top = [n for n in os.listdir(self.group.folder) if classify(n) is FileKind.MARKER]
        if not top:
            return
        for batch_id in [*self.line.waiting]:
            for marker in self.spool.reunite_markers(batch_id, top):
                log.warning("marker_reunited", group=self.group.key, batch=batch_id, file=marker)

    def adopt(self) -> None:
        """Put in line the batches that appeared in the spool (`dropd retry`, `release`), and
        forget the held batches that left held/ (released, or removed by a person)."""
        known = {*self.line.waiting, self.line.in_flight}
        if self.line.open is not None:
            known.add(self.line.open.batch_id)
        if self._spool_has_new(known):
            self._enqueue([b for b in self.spool.batch_ids() if b not in known], "batch_adopted")
        # One stat where held/ has never been made: every poll of every group comes here.
        if self.held or os.path.isdir(f"{self.group.folder}/held"):
            self.held = held_batches(self.group.folder, self.held)

    def _spool_has_new(self, known: set[str | None]) -> bool:
        # One listing per scan; the manifests are looked for only when a name is new.
        try:
            names = os.listdir(self.spool.work)
        except FileNotFoundError:
            return False
        return any(n not in known and not n.startswith(".") for n in names)

    def _enqueue(self, batch_ids: list[str], event: str) -> None:
        manifests = sorted(
            (self.spool.load(b) for b in batch_ids), key=lambda m: (m.queued or m.created, m.batch)
        )
        for manifest in manifests:
            if manifest.state is BatchState.OPEN:
                self.unsynced.add(manifest.batch)  # claimed by a process that may not have synced
                if self._close(manifest.batch):
                    self.line.waiting.append(manifest.batch)
                continue
            count = self.spool.file_count(manifest.batch)
            self.line.waiting.append(manifest.batch)
            self.batch_files[manifest.batch] = count
            log.info(
                event,
                group=self.group.key,
                batch=manifest.batch,
                state=manifest.state.value,
                files=count,
            )

    # -- intake -----------------------------------------------------------------------------

    def scan(self, now: float, daemon: DaemonSettings) -> None:
        """Look at the folder again and claim every file that is complete."""
        self.dirty = False
        every = daemon.poll_seconds or crashpoints.rescan_seconds(RESCAN_SECONDS)
        self.next_scan = now + every
        try:
            seen = scan_folder(self.group.folder)
            self.adopt()
        except (OSError, SpoolError) as exc:
            self._folder_lost(exc)
            return
        self._watch()
        # Markers need no settling: they only make their file ready.
        self.tracker.observe([s for s in seen if s.kind is not FileKind.MARKER], now)
        mode = self.group.done_markers
        taken = [
            self._take(r, now)
            for r in ready_files(seen, self.tracker, now, daemon.settle_seconds, mode)
        ]
        taken.append(self._sync_claims())
        if all(taken) and self.error and self.error[0] == "folder":
            log.info("group_recovered", group=self.group.key, step=self.error[0])
            self.error = None
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

    def _folder_lost(self, exc: BaseException) -> None:
        # An unmounted share or a removed folder: say so, stop watching the dead inode, and
        # pick it up again at a later scan.
        if self.watcher is not None:
            self.watcher.unwatch(self.group.key)
        self.set_error(
            "folder",
            f"{self.group.folder} cannot be read: {_reason(exc)}; "
            "check the share is mounted and dropd may read it",
        )

    def _take(self, ready: ReadyFile, now: float) -> bool:
        """Claim one ready file; False (and the group in Error) if the disk refused."""
        self.tracker.forget(ready.name)
        try:
            if ready.kind is FileKind.OTHER:
                self._fail_alone(ready)
            elif ready.kind is FileKind.ZIP:
                self._batch_alone(ready, now)
            else:
                self._join_open(ready, now)
        except SpoolError as exc:
            # Step `folder`, not `intake`: the next good scan clears it, while a batch that
            # failed at intake keeps the group in Error until a later batch goes up.
            self.set_error("folder", str(exc))
            return False
        return True

    def _join_open(self, ready: ReadyFile, now: float) -> None:
        if not self.line.takes(ready.name):
            self.close_open()
            manifest = self.spool.open_batch(self.wall())
            self.line.open = OpenBatch(manifest.batch, now, now)
            log.info("batch_opened", group=self.group.key, batch=manifest.batch)
        assert self.line.open is not None
        # Made durable once for the whole scan (`_sync_claims`), not once per file.
        if self.spool.claim(self.line.open.batch_id, ready, sync=False):
            self.unsynced.add(self.line.open.batch_id)
            self.line.add(ready.name, now)
            crashpoints.reached("claimed")
            log.info(
                "file_claimed",
                group=self.group.key,
                batch=self.line.open.batch_id,
                file=ready.name,
                bytes=ready.size,
                markers=list(ready.markers),
            )

    def _sync_claims(self) -> bool:
        """fsync the batches this scan claimed into; False (the group in Error) if refused."""
        try:
            for batch_id in sorted(self.unsynced):
                self.spool.sync_claims(batch_id)
                self.unsynced.discard(batch_id)
        except SpoolError as exc:
            self.set_error("folder", str(exc))
            return False
        return True

    def _batch_alone(self, ready: ReadyFile, now: float) -> None:
        manifest = self.spool.open_batch(self.wall())
        if self.spool.claim(manifest.batch, ready):
            log.info(
                "file_claimed",
                group=self.group.key,
                batch=manifest.batch,
                file=ready.name,
                bytes=ready.size,
                markers=list(ready.markers),
            )
        if self._close(manifest.batch):
            self.line.waiting.append(manifest.batch)

    def _fail_alone(self, ready: ReadyFile) -> None:
        manifest = self.spool.open_batch(self.wall())
        if not self.spool.claim(manifest.batch, ready):
            return
        reason = (
            f"{ready.name} is not a file dropd uploads (only *.csv, message.properties "
            "and *.zip are); rename it or drop it elsewhere"
        )
        result = end_batch(self.delivery, manifest, "intake", reason)
        self.record(result, self.wall())

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

    def _close(self, batch_id: str) -> bool:
        """Record a batch as closed on disk; False if it was empty and is gone."""
        count = self.spool.file_count(batch_id)
        if count == 0:
            # Every file of it vanished before its claim: nothing to send, nothing to keep.
            self.spool.discard_empty(batch_id)
            self.unsynced.discard(batch_id)
            log.info("batch_discarded", group=self.group.key, batch=batch_id, reason="empty")
            return False
        # Its claims are durable before the manifest that acts on them says `claimed` (the
        # scan that claimed them has synced them, unless a rule-3 close comes in its middle).
        if batch_id in self.unsynced:
            self.spool.sync_claims(batch_id)
            self.unsynced.discard(batch_id)
        manifest = self.spool.load(batch_id)
        manifest.state = BatchState.CLAIMED
        manifest.queued = iso_precise(self.wall())
        self.spool.save(manifest)
        crashpoints.reached("closed")
        self.batch_files[batch_id] = count
        log.info(
            "batch_closed",
            group=self.group.key,
            batch=batch_id,
            files=count,
            position=len(self.line.waiting) + 1,
        )
        return True

    def next_deadline(self, timing: BatchTiming) -> float | None:
        """The next moment this group needs the scheduler."""
        times = [t for t in (self.line.next_deadline(timing), self.next_scan) if t is not None]
        if not self.owner:
            times.append(self.next_owner_try)
        return min(times) if times else None

    # -- status -----------------------------------------------------------------------------

    def record(self, result: BatchResult, moment: datetime) -> None:
        """Keep what status needs from a batch's result."""
        if self.on_result is not None:
            self.on_result(self.group.key, result)
        if result.kind is ResultKind.SENT:
            self.last_upload = iso(moment)
            self.error = None
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

    def stop_watching(self) -> None:
        """The group left the config: no more events (a new group may take its key)."""
        if self.watcher is not None:
            self.watcher.unwatch(self.group.key)
        self.watcher = None

    def release(self) -> None:
        """Let go of the folder once nothing is in flight; its spool waits on disk."""
        self.spool.unlock()
        log.info("group_removed", group=self.group.key, folder=str(self.group.folder))

    def set_error(self, step: str, reason: str) -> None:
        if self.error != (step, reason):
            log.error("group_error", group=self.group.key, step=step, reason=reason)
        self.error = (step, reason)

    def files_waiting(self) -> int:
        """Files dropped and not yet sent or failed."""
        open_files = len(self.line.open.names) if self.line.open else 0
        queued = sum(self.batch_files.get(b, 0) for b in self.line.waiting)
        return self.tracker.watched() + open_files + queued


def token_sources(
    config: Config, on_fetch: Callable[[str, str], None] = ignore_fetch
) -> dict[str, TokenSource | SecretError]:
    """One token source per environment (shared by its groups), or why it has none."""
    daemon = config.daemon
    sources: dict[str, TokenSource | SecretError] = {}
    for name, env in config.environments.items():
        try:
            sources[name] = TokenSource(
                env,
                read_secret(env),
                daemon.state_dir,
                (daemon.connect_timeout_seconds, daemon.read_timeout_seconds),
                on_fetch=on_fetch,
            )
        except SecretError as exc:
            log.error("secret_unavailable", environment=name, reason=exc.reason)
            sources[name] = exc
    return sources


def build_delivery(
    config: Config,
    group: Group,
    spool: Spool,
    tokens: TokenSource | SecretError,
    wall: Callable[[], datetime],
    memory: DeliveryMemory | None = None,
) -> Delivery:
    """What a group's uploads need: its environment, token source and an HTTP session."""
    env = config.environments[group.environment]
    daemon = config.daemon
    return Delivery(
        group,
        env,
        spool,
        tokens,
        api.new_session(env.ca_bundle),
        (daemon.connect_timeout_seconds, daemon.read_timeout_seconds),
        daemon.give_up_after_seconds,
        wall,
        memory or DeliveryMemory(),
    )


def build_group(
    config: Config, group: Group, tokens: TokenSource | SecretError, wall: Callable[[], datetime]
) -> GroupWorker:
    """A group's run-time state: its spool, and what its uploads need."""
    spool = Spool(group.folder, group.key)
    return GroupWorker(group, build_delivery(config, group, spool, tokens, wall), spool, wall)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, SpoolError):
        return exc.reason
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)
