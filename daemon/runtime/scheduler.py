"""The scheduler: one thread owns all state; watchdog and uploads only post to its queue.

watchdog threads ──FolderChanged──▶ ┐
upload pool ─────────Finished─────▶ ├─ inbox ─▶ scheduler: scan, claim, close, start uploads
signal handlers ───────Signal─────▶ ┘
"""

from __future__ import annotations

import queue
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import structlog

from daemon.base import crashpoints
from daemon.base.errors import ConfigError, SecretError
from daemon.base.timestamps import utc_now
from daemon.config.load import load_config
from daemon.config.model import Config, DaemonSettings
from daemon.delivery.outcome import BatchResult
from daemon.delivery.setup import token_sources
from daemon.intake.watch import FolderChanged, FolderWatcher
from daemon.observe.alerts import AlertSender
from daemon.observe.metrics import Metrics
from daemon.observe.publishing import PUBLISH_SECONDS, outline, publish_due, status_line
from daemon.observe.snapshot import GroupSnapshot
from daemon.observe.status import StatusWriter
from daemon.provider.tokens import TokenSource
from daemon.runtime.agenda import NOW, Agenda
from daemon.runtime.group import GroupWorker, build_group
from daemon.runtime.line import Backoff, BatchTiming
from daemon.runtime.notify import Notifier
from daemon.runtime.once import OnceOutcome, OnceTally, work_of
from daemon.runtime.reconfigure import keep_restart_keys, plan_reload
from daemon.runtime.upload_pool import Finished, UploadPool
from daemon.spool.retention import Pruner

log = structlog.get_logger()

STOP_GRACE_SECONDS = 30.0  # how long SIGTERM waits for uploads in flight
LOOP_CEILING_SECONDS = 5.0  # the loop wakes at least this often (watchdog, standby)
INTERNAL_RETRY_SECONDS = 30.0  # a group whose visit met a bug is looked at again after this
STOP_POLL_SECONDS = 0.2  # while stopping, how long one wait for an upload's end lasts at most


@dataclass(frozen=True, slots=True)
class Signal:
    signum: int


class Scheduler:
    """Owns every group's state; the only thread that decides anything."""

    def __init__(
        self,
        config: Config,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = utc_now,
        *,
        once: bool = False,
        configure_log: Callable[[DaemonSettings], None] | None = None,
    ) -> None:
        self.config = config
        # `dropd run --once`: the results of the batches the run took; None for the daemon.
        self.once = OnceTally() if once else None
        self.configure_log = configure_log  # a reload that changes the log settings calls it
        self.clock = clock
        self.wall = wall
        self.inbox: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.timing = BatchTiming(config.daemon.quiet_seconds, config.daemon.max_wait_seconds)
        backoff = Backoff(config.daemon.retry_initial_seconds, config.daemon.retry_max_seconds)
        self.pool = UploadPool(self.inbox, backoff)
        self.notifier = Notifier(clock=clock)
        self.watcher: FolderWatcher | None = None
        self.status = StatusWriter(config.daemon.state_dir, started=wall())
        self.pruner = Pruner(wall)
        self.metrics = Metrics()
        self.alerts = AlertSender(clock)  # [notify]: messages sent by a thread of their own
        self.groups: dict[str, GroupWorker] = {}
        self.retiring: list[GroupWorker] = []  # removed by a reload, finishing their upload
        self.stopping = False
        self.agenda = Agenda()  # which groups need a visit, when
        self.visit_all = True  # at start and after a reload: every group once
        self.unpublished = True  # something may have changed since the last publish
        self.published_at = float("-inf")

    def start(self) -> None:
        """Recover every spool, scan every folder, then tell systemd we are ready."""
        if self.config.daemon.poll_seconds == 0:
            self.watcher = FolderWatcher(self.inbox)
        self.metrics.serve(self.config.daemon.metrics_port)
        self.alerts.configure(self.config)
        self.alerts.start()
        now = self.clock()
        tokens = token_sources(self.config, self.metrics.token_fetched)
        for key in self.config.groups:
            self._add_group(key, tokens, now)
        for worker in self.groups.values():
            if worker.owner:
                self._visit_contained(worker, now, self.config.daemon, scan_only=True)
        snapshots = self.snapshots()
        self.status.write(snapshots, self.wall())
        self.metrics.publish(snapshots)
        self.notifier.ready(status_line(snapshots))
        log.info(
            "daemon_ready",
            groups=len(self.groups),
            batches_waiting=sum(len(w.line.waiting) for w in self.groups.values()),
        )

    def _add_group(
        self, key: str, tokens: dict[str, TokenSource | SecretError], now: float
    ) -> None:
        group = self.config.groups[key]
        worker = build_group(self.config, group, tokens[group.environment], self.wall)
        worker.report_results_to(self._batch_finished)
        worker.report_alerts_to(self.alerts.tell)
        self.groups[key] = worker
        worker.take_ownership(now, self.watcher)

    def _batch_finished(self, group: str, result: BatchResult) -> None:
        self.metrics.batch_finished(group, result)
        if self.once is not None:
            self.once.record(result)

    def reload(self) -> None:
        """SIGHUP: read the config again; a bad one is refused and the running one kept."""
        self.notifier.reloading()
        try:
            new = load_config(self.config.path)
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("reload_refused", problem=problem)
            self.notifier.ready(self.summary())
            return
        # The state_dir's lock and status belong to this process for its whole run: such
        # keys keep their running value, and are named, until a restart.
        new, restart_needed = keep_restart_keys(self.config, new)
        if restart_needed:
            log.warning(
                "reload_needs_restart",
                keys=list(restart_needed),
                reason=f"a reload cannot change {', '.join(restart_needed)}: they keep their "
                "running values until dropd is restarted (systemctl restart dropd)",
            )
        plan = plan_reload(self.config, new)
        self._apply(new)
        tokens = token_sources(new, self.metrics.token_fetched)
        for key in plan.removed:
            worker = self.groups.pop(key)
            worker.stop_watching()
            self.retiring.append(worker)
        for key in plan.kept:
            group = new.groups[key]
            self.groups[key].take_settings(new, tokens[group.environment])
        for key in plan.added:
            self._add_group(key, tokens, self.clock())
        log.info(
            "config_reloaded",
            added=list(plan.added),
            removed=list(plan.removed),
            kept=len(plan.kept),
            restart_needed=list(restart_needed),
        )
        self.notifier.ready(self.summary())

    def _apply(self, new: Config) -> None:
        old, self.config = self.config.daemon, new
        daemon = new.daemon
        logged = (old.log_format, old.log_level) != (daemon.log_format, daemon.log_level)
        if logged and self.configure_log is not None:
            self.configure_log(daemon)
        self.timing = BatchTiming(daemon.quiet_seconds, daemon.max_wait_seconds)
        self.pool.use_backoff(Backoff(daemon.retry_initial_seconds, daemon.retry_max_seconds))
        self.metrics.serve(daemon.metrics_port)  # a changed port is served at once
        self.alerts.configure(new)  # a changed [notify] is used from the next alert on
        if daemon.poll_seconds == 0 and self.watcher is None:
            self.watcher = FolderWatcher(self.inbox)
        elif daemon.poll_seconds > 0 and self.watcher is not None:
            self.watcher.stop()
            self.watcher = None
        for worker in self.groups.values():
            worker.watch_with(self.watcher)

    def run(self) -> None:
        """Handle messages and timers until SIGTERM; then stop cleanly."""
        while not self.stopping:
            self._handle(self._next_message())
            self._tick()
            if self.once is not None and self._once_over():
                self.stopping = True
        self._shutdown()

    def _once_over(self) -> bool:
        """`--once`: True when no group has anything left that it can do."""
        if any(w.in_flight() for w in self.retiring):
            return False
        now, settle = self.clock(), self.config.daemon.settle_seconds
        return all(work_of(w, now, settle).over for w in self.groups.values())

    def once_outcome(self) -> OnceOutcome:
        """`--once`: how the run went (what it sent, failed, held, and left)."""
        assert self.once is not None
        now, settle = self.clock(), self.config.daemon.settle_seconds
        return self.once.outcome(work_of(w, now, settle) for w in self.groups.values())

    def _next_message(self) -> object | None:
        timeout = max(0.0, min(self._next_deadline() - self.clock(), LOOP_CEILING_SECONDS))
        try:
            return self.inbox.get(timeout=timeout)
        except queue.Empty:
            return None

    def _handle(self, message: object | None) -> None:
        while message is not None:
            if isinstance(message, FolderChanged) and message.group in self.groups:
                self.groups[message.group].changed()
                self.agenda.schedule(message.group, NOW)
            elif isinstance(message, Finished):
                self.pool.finished(message, self.clock(), self.wall())
                self.unpublished = True
                key = message.worker.group.key
                if self.groups.get(key) is message.worker:  # its next batch may go now
                    self.agenda.schedule(key, NOW)
            elif isinstance(message, Signal):
                self._signal(message.signum)
                self.visit_all = self.unpublished = True  # a reload may change any group
            try:
                message = self.inbox.get_nowait()
            except queue.Empty:
                message = None

    def _tick(self) -> None:
        crashpoints.hang_if_asked()
        now = self.clock()
        daemon = self.config.daemon
        for worker in [w for w in self.retiring if not w.in_flight()]:
            worker.release()
            self.retiring.remove(worker)
        # Only the groups that are due: a file event, a timer, an upload's end.
        keys = list(self.groups) if self.visit_all else self.agenda.due(now)
        self.visit_all = False
        for key in keys:
            due = self.groups.get(key)
            if due is None:
                self.agenda.forget(key)
                continue
            before = outline(due.snapshot())
            self._visit_contained(due, now, daemon)
            self.unpublished = self.unpublished or outline(due.snapshot()) != before
            self.agenda.schedule(key, due.next_deadline(self.timing))
        # Not where the folder needs a person: nothing is pruned there then.
        folders = ((k, w.spool.root) for k, w in self.groups.items() if w.may_send())
        self.pruner.run(folders, now, daemon.sent_retention_days)
        if self._publish_due(now):
            self._publish(now)

    def _visit_contained(
        self, worker: GroupWorker, now: float, daemon: DaemonSettings, scan_only: bool = False
    ) -> None:
        # A bug met in one group's folder (a file no one foresaw) stops that group for a
        # while, never the daemon: it is said, and the group is looked at again later.
        try:
            if scan_only:
                worker.scan(now, daemon)
            else:
                self._visit(worker, now, daemon)
        except Exception as exc:
            log.exception("group_visit_failed", group=worker.group.key)
            worker.visit_failed(exc, now + INTERNAL_RETRY_SECONDS)

    def _visit(self, worker: GroupWorker, now: float, daemon: DaemonSettings) -> None:
        if not worker.owner:
            worker.take_ownership(now, self.watcher)
            if not worker.owner:
                return
            worker.changed()  # a folder just taken (or taken again) is looked at at once
        if worker.scan_due(now):
            worker.scan(now, daemon)
        worker.close_due(now, self.timing)
        if not self.stopping:
            self.pool.start_next(worker, now)

    def _publish_due(self, now: float) -> bool:
        heartbeat = self.notifier.next_heartbeat()
        return publish_due(now, self.published_at, self.unpublished, heartbeat)

    def _publish(self, now: float) -> None:
        """Heartbeat and STATUS=, the status file, the metrics: each a pass over every group."""
        snapshots = self.snapshots()
        self.notifier.heartbeat(
            self.watcher is None or self.watcher.alive(), status_line(snapshots)
        )
        self.status.write(snapshots, self.wall())
        self.metrics.publish(snapshots)
        self.published_at, self.unpublished = now, False

    def _next_deadline(self) -> float:
        now = self.clock()
        if self.visit_all:
            return now
        deadlines = [self.agenda.next_at(), self.notifier.next_heartbeat()]
        if self.unpublished:
            deadlines.append(self.published_at + PUBLISH_SECONDS)
        return min((d for d in deadlines if d is not None), default=now + LOOP_CEILING_SECONDS)

    def _signal(self, signum: int) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            log.info("daemon_stopping", signal=signal.Signals(signum).name)
            self.stopping = True
        elif signum == signal.SIGHUP:
            self.reload()

    def _shutdown(self) -> None:
        self.notifier.stopping()
        if self.watcher is not None:
            self.watcher.stop()
        deadline = self.clock() + crashpoints.stop_grace_seconds(STOP_GRACE_SECONDS)
        while self.in_flight() and (left := deadline - self.clock()) > 0:
            try:
                message = self.inbox.get(timeout=min(left, STOP_POLL_SECONDS))
            except queue.Empty:
                continue
            if isinstance(message, Finished):
                self.pool.finished(message, self.clock(), self.wall())
        self.pool.stop()
        for worker in [*self.groups.values(), *self.retiring]:
            worker.unlock()
        self.status.write(self.snapshots(), self.wall())
        self.metrics.stop()
        self.alerts.stop()  # what waits to be sent goes, for a few seconds at most
        log.info("daemon_stopped")

    def in_flight(self) -> list[str]:
        """The batches whose upload is under way."""
        workers = [*self.groups.values(), *self.retiring]
        return [batch for w in workers if (batch := w.in_flight())]

    def summary(self) -> str:
        """The one-line STATUS= summary (ASCII: sdnotify drops anything else)."""
        return status_line(self.snapshots())

    def snapshots(self) -> list[GroupSnapshot]:
        """Every group as status, metrics and STATUS= show it now."""
        return [worker.snapshot() for worker in self.groups.values()]
