"""Prometheus metrics on 127.0.0.1:`metrics_port`, from dropd's own registry.

scheduler thread ──batch_finished──▶ counters, histogram ┐
upload threads ────token_fetched───▶ counter             ├─ registry ─▶ HTTP thread: /metrics
scheduler tick ────publish─────────▶ snapshot (a tuple) ─┘   (per-group gauges read at scrape)

prometheus-client's counters are thread-safe; the per-group gauges are built at scrape time
from the immutable snapshot the scheduler last published, so the HTTP thread never reads
live state.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from wsgiref.simple_server import WSGIServer

import structlog
from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric

from daemon import __version__
from daemon.delivery.outcome import BatchResult, ResultKind
from daemon.observe.snapshot import GroupSnapshot
from daemon.observe.status import GroupState, group_status

log = structlog.get_logger()

ADDRESS = "127.0.0.1"  # never all interfaces: the endpoint has no authentication
# From a small CSV on a campus link (a tenth of a second) to a term's enrollments on a slow
# one (many minutes).
UPLOAD_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
STATES = tuple(state.value for state in GroupState)
OUTCOMES = (ResultKind.SENT.value, ResultKind.FAILED.value, ResultKind.HELD.value)


@dataclass(frozen=True, slots=True)
class GroupGauges:
    """One group as the scheduler last published it: what the per-group gauges show."""

    group: str
    status: str  # Valid, Processing or Error
    step: str  # the step that failed while in Error, else ""
    owner: bool
    files_waiting: int
    batches_waiting: int  # closed and in line, the one in flight included
    batches_failed: int
    last_success: float | None  # unix seconds of the last sent batch, if known
    batches_held: int = 0  # in held/ by the guard, waiting for a person


def gauges_of(group: GroupSnapshot) -> GroupGauges:
    """The gauges' view of one group, from the same figures as `dropd status`."""
    status = group_status(group)
    return GroupGauges(
        group=group.group,
        status=status.status,
        step=status.step if status.status == GroupState.ERROR else "",
        owner=group.owner,
        files_waiting=group.files_waiting,
        batches_waiting=group.batches_in_line,
        batches_failed=group.failed_batches,
        last_success=_unix_seconds(group.last_upload),
        batches_held=group.batches_held,
    )


def _unix_seconds(moment: str | None) -> float | None:
    # From a receipt's `finished` after a restart: a hand-edited one must not stop the loop.
    try:
        return datetime.fromisoformat(moment).timestamp() if moment else None
    except ValueError:
        return None


class GroupCollector:
    """The per-group gauges, read at scrape time from the published snapshot."""

    def __init__(self, snapshot: Callable[[], tuple[GroupGauges, ...]]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        """Every per-group gauge, from one snapshot (a scrape sees one moment)."""
        groups = self._snapshot()
        yield _state_set(groups)
        yield _error_steps(groups)
        for name, doc, value in GAUGES:
            yield _gauge(groups, name, doc, value)
        known = [g for g in groups if g.last_success is not None]
        doc = "When the group's last batch was sent, in unix seconds (absent until one is)"
        yield _gauge(known, "dropd_last_success_timestamp_seconds", doc, _last_success)


def _last_success(group: GroupGauges) -> float:
    return group.last_success or 0.0


GAUGES: tuple[tuple[str, str, Callable[[GroupGauges], float]], ...] = (
    (
        "dropd_group_owner",
        "1 while this dropd holds the group's folder lock, 0 while it stands by",
        lambda g: float(g.owner),
    ),
    ("dropd_files_waiting", "Files dropped and not yet sent or failed", lambda g: g.files_waiting),
    (
        "dropd_batches_waiting",
        "Closed batches in line, the one being uploaded included",
        lambda g: g.batches_waiting,
    ),
    (
        "dropd_batches_failed",
        "Failed batches, as dropd status counts them",
        lambda g: g.batches_failed,
    ),
    (
        "dropd_batches_held",
        "Batches the guard holds in held/ until a person releases or removes them",
        lambda g: g.batches_held,
    ),
)


def _gauge(
    groups: Iterable[GroupGauges], name: str, doc: str, value: Callable[[GroupGauges], float]
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=["group"])
    for group in groups:
        family.add_metric([group.group], value(group))
    return family


def _state_set(groups: Iterable[GroupGauges]) -> GaugeMetricFamily:
    doc = "1 for the group's current status (Valid, Processing, Error), 0 for the others"
    family = GaugeMetricFamily("dropd_group_status", doc, labels=["group", "status"])
    for group in groups:
        for state in STATES:
            family.add_metric([group.group, state], float(group.status == state))
    return family


def _error_steps(groups: Iterable[GroupGauges]) -> GaugeMetricFamily:
    doc = "1 with the step that failed while the group is in Error; absent otherwise"
    family = GaugeMetricFamily("dropd_group_error_step", doc, labels=["group", "step"])
    for group in groups:
        if group.step:
            family.add_metric([group.group, group.step], 1.0)
    return family


def _counter(registry: CollectorRegistry, name: str, doc: str, *labels: str) -> Counter:
    return Counter(name, doc, labels, registry=registry)


class Metrics:
    """dropd's metrics: a registry of its own (never the global one) and its HTTP server."""

    def __init__(self) -> None:
        # The `_created` series double the output and nobody alerts on them. (The switch is
        # process-wide, and untyped in prometheus-client.)
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = r = CollectorRegistry()
        ProcessCollector(registry=r)  # RSS, CPU seconds, open fds, start time
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        Info("dropd_build", "The running dropd", registry=r).info({"version": __version__})
        self.batches = _counter(
            r,
            "dropd_batches",
            "Batches that ended, by outcome (sent, failed, held)",
            "group",
            "outcome",
        )
        self.sent_files = _counter(
            r, "dropd_sent_files", "Files uploaded in sent batches (markers not counted)", "group"
        )
        self.sent_file_bytes = _counter(
            r, "dropd_sent_file_bytes", "Bytes of the files of sent batches, as dropped", "group"
        )
        self.sent_zip_bytes = _counter(
            r, "dropd_sent_zip_bytes", "Bytes of the ZIPs the server took for sent batches", "group"
        )
        self.upload_seconds = Histogram(
            "dropd_upload_duration_seconds",
            "Time spent in upload POSTs, per delivery attempt",
            ["group"],
            buckets=UPLOAD_BUCKETS,
            registry=r,
        )
        self.retries = _counter(
            r, "dropd_retries", "Delivery attempts that will be tried again", "group", "step"
        )
        self.token_fetches = _counter(
            r,
            "dropd_token_fetches",
            "Token fetches (ok, rejected, failed)",
            "environment",
            "result",
        )
        self._groups: tuple[GroupGauges, ...] = ()
        self._known: set[str] = set()
        r.register(GroupCollector(lambda: self._groups))
        self._server: tuple[WSGIServer, threading.Thread] | None = None
        self.port = 0  # the port served, 0 when none

    # -- fed by the daemon ------------------------------------------------------------------

    def batch_finished(self, group: str, result: BatchResult) -> None:
        """Count one delivery attempt's result (scheduler thread, as each result is recorded)."""
        if result.upload_seconds is not None:
            self.upload_seconds.labels(group).observe(result.upload_seconds)
        if result.kind in (ResultKind.RETRY, ResultKind.WAIT):
            self.retries.labels(group, result.step).inc()
            return
        self.batches.labels(group, result.kind.value).inc()
        if result.kind is ResultKind.SENT:
            self.sent_files.labels(group).inc(result.files)
            self.sent_file_bytes.labels(group).inc(result.file_bytes)
            self.sent_zip_bytes.labels(group).inc(result.zip_bytes)

    def token_fetched(self, environment: str, result: str) -> None:
        """Count one token fetch: ok, rejected or failed (any thread)."""
        self.token_fetches.labels(environment, result).inc()

    def publish(self, snapshots: Iterable[GroupSnapshot]) -> None:
        """Take the groups' state for the next scrapes (scheduler thread only)."""
        groups = tuple(gauges_of(s) for s in snapshots)
        for gauges in groups:
            if gauges.group not in self._known:
                self._start_series(gauges.group)
        self._groups = groups  # one reference swap: a scrape sees the old tuple or the new

    def _start_series(self, group: str) -> None:
        # Series that exist at 0 from the start let `increase()` see the first batch.
        self._known.add(group)
        for outcome in OUTCOMES:
            self.batches.labels(group, outcome)
        for counter in (self.sent_files, self.sent_file_bytes, self.sent_zip_bytes):
            counter.labels(group)
        self.upload_seconds.labels(group)

    # -- the HTTP endpoint ------------------------------------------------------------------

    def serve(self, port: int) -> None:
        """Serve /metrics on 127.0.0.1:`port` (0: not at all), leaving the port served before.

        A port that cannot be bound is logged; dropd runs on without metrics.
        """
        if port == self.port:
            return
        self.stop()
        if port == 0:
            return
        try:
            self._server = start_http_server(port, addr=ADDRESS, registry=self.registry)
        except OSError as exc:
            log.error(
                "metrics_unavailable",
                port=port,
                problem=f"daemon.metrics_port: {ADDRESS}:{port} cannot be bound "
                f"({exc.strerror or exc}); dropd runs on without metrics: free the port or "
                "choose another, then reload dropd",
            )
            return
        self.port = port
        log.info("metrics_serving", url=f"http://{ADDRESS}:{port}/metrics")

    def stop(self) -> None:
        """Stop serving and free the port (a reload may want it again at once)."""
        if self._server is None:
            return
        server, thread = self._server
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        log.info("metrics_stopped", port=self.port)
        self._server, self.port = None, 0
