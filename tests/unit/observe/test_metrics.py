"""Tests of dropd's Prometheus metrics (daemon/observe/metrics.py), read back from its registry."""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, generate_latest
from structlog.testing import capture_logs

from daemon.base.steps import Step
from daemon.delivery.outcome import BatchResult, ResultKind
from daemon.observe.metrics import GroupGauges, Metrics, gauges_of
from daemon.observe.status import group_status
from daemon.runtime.group import GroupWorker
from unit.workers import music_worker

MOMENT = datetime(2026, 11, 23, 8, 58, 10, tzinfo=UTC)
SENT = BatchResult(ResultKind.SENT, files=2, file_bytes=300, zip_bytes=250, upload_seconds=0.4)


@pytest.fixture
def metrics() -> Iterator[Metrics]:
    made = Metrics()
    yield made
    made.stop()


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        return str(answer.read().decode())


def worker(tmp_path: Path) -> GroupWorker:
    made = music_worker(tmp_path, MOMENT)
    assert made.lease.take(0.0)
    return made


def gauges(**changes: object) -> GroupGauges:
    fields: dict[str, object] = {
        "group": "music",
        "status": "Valid",
        "step": "",
        "owner": True,
        "files_waiting": 0,
        "batches_waiting": 0,
        "batches_failed": 0,
        "last_success": None,
        **changes,
    }
    return GroupGauges(**fields)  # type: ignore[arg-type]


# -- counters ---------------------------------------------------------------------------------


def test_metrics_sent_batch_counts_batch_files_bytes_and_duration(metrics: Metrics) -> None:
    metrics.batch_finished("music", SENT)

    assert value(metrics, "dropd_batches_total", group="music", outcome="sent") == 1
    assert value(metrics, "dropd_sent_files_total", group="music") == 2
    assert value(metrics, "dropd_sent_file_bytes_total", group="music") == 300
    assert value(metrics, "dropd_sent_zip_bytes_total", group="music") == 250
    assert value(metrics, "dropd_upload_duration_seconds_count", group="music") == 1
    assert value(metrics, "dropd_upload_duration_seconds_sum", group="music") == 0.4
    assert value(metrics, "dropd_upload_duration_seconds_bucket", group="music", le="0.5") == 1
    assert value(metrics, "dropd_upload_duration_seconds_bucket", group="music", le="0.25") == 0


def test_metrics_failed_batch_counts_failed_and_nothing_sent(metrics: Metrics) -> None:
    metrics.batch_finished("music", BatchResult(ResultKind.FAILED, Step.VALIDATE, "bad header"))

    assert value(metrics, "dropd_batches_total", group="music", outcome="failed") == 1
    assert value(metrics, "dropd_sent_files_total", group="music") is None
    # Validation failed before any POST: no duration.
    assert value(metrics, "dropd_upload_duration_seconds_count", group="music") is None


@pytest.mark.parametrize(
    ("kind", "step"), [(ResultKind.RETRY, Step.UPLOAD), (ResultKind.WAIT, Step.TOKEN)]
)
def test_metrics_retry_and_wait_count_as_retries_by_step(
    metrics: Metrics, kind: ResultKind, step: Step
) -> None:
    metrics.batch_finished("music", BatchResult(kind, step, "later", upload_seconds=1.5))
    metrics.batch_finished("music", BatchResult(kind, step, "later"))

    assert value(metrics, "dropd_retries_total", group="music", step=step) == 2
    assert value(metrics, "dropd_batches_total", group="music", outcome="sent") is None
    assert value(metrics, "dropd_upload_duration_seconds_count", group="music") == 1


def test_metrics_token_fetches_by_environment_and_result(metrics: Metrics) -> None:
    metrics.token_fetched("test", "ok")
    metrics.token_fetched("test", "ok")
    metrics.token_fetched("prod", "rejected")

    assert value(metrics, "dropd_token_fetches_total", environment="test", result="ok") == 2
    assert value(metrics, "dropd_token_fetches_total", environment="prod", result="rejected") == 1


def test_metrics_registry_is_its_own_with_process_metrics(metrics: Metrics) -> None:
    metrics.batch_finished("music", SENT)

    assert b"dropd_" not in generate_latest(REGISTRY)
    text = generate_latest(metrics.registry).decode()
    assert "process_resident_memory_bytes" in text
    assert "process_open_fds" in text
    assert "python_info" in text
    assert 'dropd_build_info{version="' in text
    assert "_created" not in text


# -- per-group gauges -------------------------------------------------------------------------


def test_metrics_publish_starts_each_groups_series_at_zero(
    metrics: Metrics, tmp_path: Path
) -> None:
    metrics.publish([worker(tmp_path).snapshot()])

    for outcome in ("sent", "failed"):
        assert value(metrics, "dropd_batches_total", group="music", outcome=outcome) == 0
    assert value(metrics, "dropd_sent_files_total", group="music") == 0
    assert value(metrics, "dropd_upload_duration_seconds_count", group="music") == 0


def test_metrics_group_gauges_of_a_valid_group(metrics: Metrics, tmp_path: Path) -> None:
    metrics.publish([worker(tmp_path).snapshot()])

    assert value(metrics, "dropd_group_status", group="music", status="Valid") == 1
    assert value(metrics, "dropd_group_status", group="music", status="Processing") == 0
    assert value(metrics, "dropd_group_status", group="music", status="Error") == 0
    assert value(metrics, "dropd_group_owner", group="music") == 1
    assert value(metrics, "dropd_files_waiting", group="music") == 0
    assert value(metrics, "dropd_batches_waiting", group="music") == 0
    assert value(metrics, "dropd_batches_failed", group="music") == 0
    assert value(metrics, "dropd_last_success_timestamp_seconds", group="music") is None
    assert "dropd_group_error_step{" not in generate_latest(metrics.registry).decode()


def test_metrics_group_gauges_follow_the_workers_results(metrics: Metrics, tmp_path: Path) -> None:
    music = worker(tmp_path)
    music.record(SENT, MOMENT)
    music.record(BatchResult(ResultKind.FAILED, Step.UPLOAD, "HTTP 400"), MOMENT)
    metrics.publish([music.snapshot()])

    assert value(metrics, "dropd_group_status", group="music", status="Error") == 1
    assert value(metrics, "dropd_group_status", group="music", status="Valid") == 0
    assert value(metrics, "dropd_group_error_step", group="music", step="upload") == 1
    assert value(metrics, "dropd_batches_failed", group="music") == 1
    last = value(metrics, "dropd_last_success_timestamp_seconds", group="music")
    assert last == MOMENT.timestamp()


def test_metrics_snapshot_counts_files_and_batches_waiting(tmp_path: Path) -> None:
    music = worker(tmp_path)
    music.line.enqueue("b1", 2)
    music.line.enqueue("b2", 3)
    music.line.start("b1")

    taken = gauges_of(music.snapshot())

    # The batch in flight heads the line: counted once, in files and in batches.
    assert (taken.status, taken.files_waiting, taken.batches_waiting) == ("Processing", 5, 2)


def test_metrics_snapshot_with_a_bad_last_upload_has_no_last_success(tmp_path: Path) -> None:
    music = worker(tmp_path)
    music.record(SENT, MOMENT)
    taken = replace(music.snapshot(), last_upload="yesterday")
    assert gauges_of(taken).last_success is None


def test_metrics_gauges_show_the_last_published_snapshot_only(metrics: Metrics) -> None:
    metrics._groups = (gauges(group="art", status="Processing", files_waiting=4),)
    metrics._groups = (gauges(group="music", owner=False),)

    assert value(metrics, "dropd_group_owner", group="music") == 0
    assert value(metrics, "dropd_files_waiting", group="art") is None


# -- the endpoint -----------------------------------------------------------------------------


def test_metrics_serve_on_loopback_then_stop_lets_go_of_the_port(metrics: Metrics) -> None:
    port = free_port()
    with capture_logs() as logs:
        metrics.serve(port)
    assert metrics.port == port
    assert logs[-1]["event"] == "metrics_serving"
    assert logs[-1]["url"] == f"http://127.0.0.1:{port}/metrics"
    metrics.batch_finished("music", SENT)
    assert 'dropd_batches_total{group="music",outcome="sent"} 1.0' in scrape(port)
    with pytest.raises(OSError), socket.create_connection(("127.0.0.2", port), timeout=2):
        pass  # bound to 127.0.0.1, not every address

    metrics.stop()

    assert metrics.port == 0
    with pytest.raises(OSError):
        scrape(port)
    metrics.serve(port)  # a reload or restart may take the port again at once
    assert metrics.port == port


def test_metrics_serve_port_in_use_logs_the_key_and_runs_on(metrics: Metrics) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with capture_logs() as logs:
            metrics.serve(port)

    assert metrics.port == 0
    [problem] = [e for e in logs if e["event"] == "metrics_unavailable"]
    assert problem["log_level"] == "error"
    assert problem["problem"].startswith(f"daemon.metrics_port: 127.0.0.1:{port} cannot be bound")
    assert "in use" in problem["problem"]
    metrics.serve(port)  # the port is free now: the same setting is tried again
    assert metrics.port == port


def test_metrics_serve_a_new_port_leaves_the_old_one(metrics: Metrics) -> None:
    first, second = free_port(), free_port()
    metrics.serve(first)
    metrics.serve(second)

    assert "dropd_build_info" in scrape(second)
    with pytest.raises(OSError):
        scrape(first)
    metrics.serve(0)
    assert metrics.port == 0


def test_metrics_held_batch_counts_held_and_shows_error_step_guard(
    metrics: Metrics, tmp_path: Path
) -> None:
    music = worker(tmp_path)
    music.report_results_to(metrics.batch_finished)
    metrics.publish([music.snapshot()])
    assert value(metrics, "dropd_batches_total", group="music", outcome="held") == 0
    music.record(BatchResult(ResultKind.FAILED, Step.UPLOAD, "HTTP 400"), MOMENT)
    held = tmp_path / "music" / "held" / "20261123T085810.123456Z-3f9a"
    reason = "users.csv has 150 of its 200 rows deleted (75%), more than ..."
    music.record(BatchResult(ResultKind.HELD, Step.GUARD, reason, destination=held), MOMENT)
    metrics.publish([music.snapshot()])

    assert value(metrics, "dropd_batches_total", group="music", outcome="held") == 1
    assert value(metrics, "dropd_group_status", group="music", status="Error") == 1
    assert value(metrics, "dropd_group_error_step", group="music", step="guard") == 1
    assert value(metrics, "dropd_batches_held", group="music") == 1
    assert value(metrics, "dropd_batches_failed", group="music") == 1
    status = group_status(music.snapshot())
    assert (status.step, status.reason, status.batches_held) == ("guard", reason, 1)

    music.record(BatchResult(ResultKind.WAIT, Step.TOKEN, "no token"), MOMENT)
    assert group_status(music.snapshot()).step == "token", "a live problem shows first"
    music.record(SENT, MOMENT)
    assert group_status(music.snapshot()).step == "guard", "until released or removed"
    second = tmp_path / "music" / "held" / "20261124T085810.123456Z-beef"
    music.record(BatchResult(ResultKind.HELD, Step.GUARD, "second", destination=second), MOMENT)
    music.record(SENT, MOMENT)
    assert group_status(music.snapshot()).reason == "second (1 more held batch in held/)"
    music.health.look_at_held(music.spool.root)  # a person removed both from held/
    assert group_status(music.snapshot()).status == "Valid"
