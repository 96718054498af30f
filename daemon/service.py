"""The main loop: one scheduler thread owns all state; watchdog and uploads only post to its queue.

watchdog threads ──FolderChanged──▶ ┐
upload pool ─────────Finished─────▶ ├─ inbox ─▶ scheduler: scan, claim, close, start uploads
signal handlers ───────Signal─────▶ ┘
"""

from __future__ import annotations

import faulthandler
import logging
import os
import queue
import random
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import FrameType

import structlog

from daemon import crashpoints
from daemon import log as logsetup
from daemon.agenda import NOW, Agenda
from daemon.auth import TokenSource
from daemon.batch import Backoff, BatchTiming
from daemon.config import Config, DaemonSettings, load_config
from daemon.delivery import BatchResult, ResultKind, deliver
from daemon.errors import ConfigError, DropdError, SecretError
from daemon.groups import GroupWorker, build_group, token_sources
from daemon.metrics import Metrics
from daemon.notify import Notifier
from daemon.reconfigure import plan_reload
from daemon.retention import Pruner
from daemon.spool import utc_now
from daemon.status import REFRESH_SECONDS, StatusWriter, group_status
from daemon.watch import FolderChanged, FolderWatcher

log = structlog.get_logger()

STOP_GRACE_SECONDS = 30.0  # how long SIGTERM waits for uploads in flight
LOOP_CEILING_SECONDS = 5.0  # the loop wakes at least this often (watchdog, standby)
UPLOAD_THREADS = 8
# Status file, metrics and STATUS= cost a pass over every group: done at most this often
# while things happen, and this often when nothing does (the status file is rewritten every
# REFRESH_SECONDS, so `dropd status` can tell a stuck loop from a quiet one).
PUBLISH_SECONDS = 0.5
QUIET_PUBLISH_SECONDS = REFRESH_SECONDS / 3


@dataclass(frozen=True, slots=True)
class Finished:
    worker: GroupWorker  # not its key: a reload may have put a new worker under that key
    batch_id: str
    result: BatchResult


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
    ) -> None:
        self.config = config
        self.clock = clock
        self.wall = wall
        self.inbox: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.timing = BatchTiming(config.daemon.quiet_seconds, config.daemon.max_wait_seconds)
        self.backoff = Backoff(config.daemon.retry_initial_seconds, config.daemon.retry_max_seconds)
        self.rng = random.Random()
        self.notifier = Notifier()
        # Threads start only as uploads need them; groups added by a reload share the pool.
        self.pool = ThreadPoolExecutor(max_workers=UPLOAD_THREADS, thread_name_prefix="upload")
        self.watcher: FolderWatcher | None = None
        self.status = StatusWriter(config.daemon.state_dir)
        self.pruner = Pruner(wall)
        self.metrics = Metrics()
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
        now = self.clock()
        tokens = token_sources(self.config, self.metrics.token_fetched)
        for key in self.config.groups:
            self._add_group(key, tokens, now)
        for worker in self.groups.values():
            if worker.owner:
                worker.scan(now, self.config.daemon)
        self.status.write(self.groups.values(), self.wall())
        self.metrics.publish(self.groups.values())
        self.notifier.ready(self.summary())
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
        worker.on_result = self.metrics.batch_finished
        self.groups[key] = worker
        worker.take_ownership(now, self.watcher)

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
        )
        self.notifier.ready(self.summary())

    def _apply(self, new: Config) -> None:
        self.config = new
        daemon = new.daemon
        self.timing = BatchTiming(daemon.quiet_seconds, daemon.max_wait_seconds)
        self.backoff = Backoff(daemon.retry_initial_seconds, daemon.retry_max_seconds)
        self.status = StatusWriter(daemon.state_dir)
        self.metrics.serve(daemon.metrics_port)  # a changed port is served at once
        if daemon.poll_seconds == 0 and self.watcher is None:
            self.watcher = FolderWatcher(self.inbox)
        elif daemon.poll_seconds > 0 and self.watcher is not None:
            self.watcher.stop()
            self.watcher = None
        for worker in self.groups.values():
            worker.watcher = self.watcher

    def run(self) -> None:
        """Handle messages and timers until SIGTERM; then stop cleanly."""
        while not self.stopping:
            self._handle(self._next_message())
            self._tick()
        self._shutdown()

    def _next_message(self) -> object | None:
        timeout = max(0.0, min(self._next_deadline() - self.clock(), LOOP_CEILING_SECONDS))
        try:
            return self.inbox.get(timeout=timeout)
        except queue.Empty:
            return None

    def _handle(self, message: object | None) -> None:
        while message is not None:
            if isinstance(message, FolderChanged) and message.group in self.groups:
                self.groups[message.group].dirty = True
                self.agenda.schedule(message.group, NOW)
            elif isinstance(message, Finished):
                self._finished(message)
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
        for worker in [w for w in self.retiring if not w.line.in_flight]:
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
            before = _outline(due)
            self._visit(due, now, daemon)
            self.unpublished = self.unpublished or _outline(due) != before
            self.agenda.schedule(key, due.next_deadline(self.timing))
        self.pruner.run(self.groups.values(), now, daemon.sent_retention_days)
        if self._publish_due(now):
            self._publish(now)

    def _visit(self, worker: GroupWorker, now: float, daemon: DaemonSettings) -> None:
        if not worker.owner:
            worker.take_ownership(now, self.watcher)
            return
        if worker.dirty or now >= worker.next_scan:
            worker.scan(now, daemon)
        worker.close_due(now, self.timing)
        self._start_next(worker, now)

    def _publish_due(self, now: float) -> bool:
        heartbeat = self.notifier.next_heartbeat(now)
        return (
            (self.unpublished and now >= self.published_at + PUBLISH_SECONDS)
            or now >= self.published_at + QUIET_PUBLISH_SECONDS
            or (heartbeat is not None and now >= heartbeat)
        )

    def _publish(self, now: float) -> None:
        """Heartbeat and STATUS=, the status file, the metrics: each a pass over every group."""
        self.notifier.heartbeat(self.watcher is None or self.watcher.alive(), self.summary())
        self.status.write(self.groups.values(), self.wall())
        self.metrics.publish(self.groups.values())
        self.published_at, self.unpublished = now, False

    def _start_next(self, worker: GroupWorker, now: float) -> None:
        if self.stopping:
            return
        batch_id = worker.line.next_to_send(now)
        if batch_id is None:
            return
        worker.line.start(batch_id)
        future = self.pool.submit(deliver, worker.delivery, batch_id)
        future.add_done_callback(lambda f: self.inbox.put(Finished(worker, batch_id, _result(f))))

    def _finished(self, message: Finished) -> None:
        worker, result, now = message.worker, message.result, self.clock()
        worker.record(result, self.wall())
        if result.kind in (ResultKind.SENT, ResultKind.FAILED, ResultKind.HELD):
            worker.line.finish(message.batch_id)
            worker.failures = 0
            return
        worker.failures += 1
        delay = self.backoff.delay(worker.failures, self.rng, result.retry_after)
        worker.line.retry_later(now + delay)
        log.warning(
            "batch_waits",
            group=worker.group.key,
            batch=message.batch_id,
            step=result.step,
            reason=result.reason,
            retry_in_seconds=round(delay, 2),
        )

    def _next_deadline(self) -> float:
        now = self.clock()
        if self.visit_all:
            return now
        deadlines = [self.agenda.next_at(), self.notifier.next_heartbeat(now)]
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
        deadline = time.monotonic() + crashpoints.stop_grace_seconds(STOP_GRACE_SECONDS)
        while self.in_flight() and time.monotonic() < deadline:
            try:
                message = self.inbox.get(timeout=0.2)
            except queue.Empty:
                continue
            if isinstance(message, Finished):
                self._finished(message)
        self.pool.shutdown(wait=False, cancel_futures=True)
        for worker in [*self.groups.values(), *self.retiring]:
            worker.spool.unlock()
        self.status.write(self.groups.values(), self.wall())
        self.metrics.stop()
        log.info("daemon_stopped")

    def in_flight(self) -> list[str]:
        """The batches whose upload is under way."""
        workers = [*self.groups.values(), *self.retiring]
        return [w.line.in_flight for w in workers if w.line.in_flight]

    def summary(self) -> str:
        """The one-line STATUS= summary (ASCII: sdnotify drops anything else)."""
        states = [group_status(w) for w in self.groups.values()]
        waiting = sum(state["files_waiting"] for state in states)
        uploads = [state["last_upload"] for state in states if state["last_upload"]]
        last = f"last upload {max(uploads)}" if uploads else "no upload yet"
        # As `dropd status` sees it: a held batch (step guard) counts too.
        errors = [f"{s['group']}: {s['step']}" for s in states if s["status"] == "Error"]
        problems = f"{len(errors)} in error ({', '.join(errors)})" if errors else "0 in error"
        return f"{len(states)} groups, {waiting} files waiting, {last}, {problems}"


def _outline(worker: GroupWorker) -> tuple[object, ...]:
    # What a visit may change of what status shows (a batch failed at intake, a file seen, a
    # batch closed or started); a change it misses goes out with the next quiet publish.
    line = worker.line
    return (
        worker.failed_batches,
        worker.owner,
        worker.error,
        worker.tracker.watched(),  # a file seen, or claimed
        line.open.batch_id if line.open else None,
        len(line.waiting),
        line.in_flight,
    )


def _result(future: object) -> BatchResult:
    # A bug in delivery must not lose the batch: it stays in the spool and waits.
    try:
        return future.result()  # type: ignore[attr-defined, no-any-return]
    except DropdError as exc:
        return BatchResult(ResultKind.WAIT, "internal", str(exc))
    except Exception as exc:
        log.exception("delivery_crashed")
        return BatchResult(ResultKind.WAIT, "internal", f"{type(exc).__name__}: {exc}")


def main(config_path: Path) -> int:
    """`dropd run`: exit 2 on a bad config, 0 after a clean stop."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        logsetup.configure()
        for problem in exc.problems:
            log.error("config_invalid", problem=problem)
        return 2
    logsetup.configure(config.daemon.log_format)
    faulthandler.enable()
    try:
        config.daemon.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        log.error(
            "config_invalid",
            problem=f"daemon.state_dir: {config.daemon.state_dir} "
            f"cannot be created ({exc.strerror}); create it or fix the path",
        )
        return 2
    scheduler = Scheduler(config)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        scheduler.inbox.put(Signal(signum))  # SimpleQueue.put is safe in a signal handler

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, on_signal)
    log.info("daemon_starting", config=str(config_path), groups=len(config.groups))
    scheduler.start()
    scheduler.run()
    if scheduler.in_flight():
        # The pool's threads would keep the process alive until the upload ends; the spool
        # has the batch, and the next start sends it again (its receipt will say so).
        log.warning("upload_left_to_recovery", batches=scheduler.in_flight())
        logging.shutdown()
        os._exit(0)
    return 0
