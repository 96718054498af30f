"""SIGTERM with an upload in flight: it gets a bounded time to finish, else recovery sends it."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from harness import (
    USERS,
    DaemonProcess,
    SandboxProcess,
    drop,
    errors,
    music_group,
    read,
    receipts,
    script_sandbox,
    start_daemon,
    start_ready,
    uploads_by_batch,
    wait_for,
)


def test_stop_waits_for_the_upload_in_flight_to_finish(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    config, folder = music_group(tmp_path, sandbox)
    script_sandbox(sandbox, [{"pause": 3}])
    daemon = start_ready(processes, config, tmp_path / "daemon.log")
    drop(folder, "users.csv", USERS)
    daemon.wait_event("upload_started")

    daemon.process.send_signal(signal.SIGTERM)
    assert daemon.process.wait(timeout=60) == 0
    events = [event["event"] for event in daemon.events()]
    assert events.index("daemon_stopping") < events.index("batch_sent")
    assert events.index("batch_sent") < events.index("daemon_stopped")
    assert len(receipts(folder)) == 1 and errors(folder) == []


def test_stop_leaves_an_upload_too_slow_for_the_grace_to_recovery(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    config, folder = music_group(tmp_path, sandbox, read_timeout_seconds=120)
    script_sandbox(sandbox, [{"hang": 120}])
    grace = {"DROPD_TEST_STOP_GRACE_SECONDS": "1"}
    daemon = start_ready(processes, config, tmp_path / "daemon.log", grace)
    drop(folder, "users.csv", USERS)
    started = daemon.wait_event("upload_started")

    stop_asked = time.monotonic()
    daemon.process.send_signal(signal.SIGTERM)
    assert daemon.process.wait(timeout=60) == 0
    assert time.monotonic() - stop_asked < 30, "the grace is 1 s here, not the upload's 120 s"
    assert any(e["event"] == "upload_left_to_recovery" for e in daemon.events())
    assert receipts(folder) == [] and errors(folder) == []

    again = start_daemon(config, tmp_path / "again.log")
    processes.append(again)
    receipt = read(wait_for(lambda: receipts(folder), "the receipt after the restart")[0])
    assert receipt["batch"] == started["batch"]
    assert receipt.get("resent_after_restart") is True
    assert list(uploads_by_batch(sandbox)) == [started["batch"]]
