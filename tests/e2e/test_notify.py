"""sd_notify through a real `NOTIFY_SOCKET`: READY, WATCHDOG, STATUS, RELOADING, STOPPING."""

from __future__ import annotations

import itertools
import signal
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import (
    USERS,
    DaemonProcess,
    NotifySocket,
    SandboxProcess,
    drop,
    music_group,
    receipts,
    script_sandbox,
    start_daemon,
    wait_for,
)

WATCHDOG_USEC = 1_000_000  # systemd's WatchdogSec=1s: dropd must ping every 0.5 s


@pytest.fixture
def notify() -> Iterator[NotifySocket]:
    socket = NotifySocket()
    yield socket
    socket.close()


def test_notify_ready_watchdog_status_reloading_stopping(
    tmp_path: Path,
    sandbox: SandboxProcess,
    processes: list[SandboxProcess | DaemonProcess],
    notify: NotifySocket,
) -> None:
    config, folder = music_group(tmp_path, sandbox)
    env = {**notify.env, "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    daemon = start_daemon(config, tmp_path / "daemon.log", env)
    processes.append(daemon)

    ready, fields = notify.wait("READY", "1")
    assert fields["STATUS"] == "1 groups, 0 files waiting, no upload yet, 0 in error"

    notify.listen(3.0)
    pings = notify.times("WATCHDOG", after=ready)
    gaps = [later - earlier for earlier, later in itertools.pairwise(pings)]
    assert len(pings) >= 3, f"only {len(pings)} WATCHDOG=1 in 3 s"
    # Half of WATCHDOG_USEC: never faster than that, and well inside the full interval.
    assert min(gaps) >= 0.4, gaps
    assert statistics.median(gaps) < 0.9, gaps

    drop(folder, "users.csv", USERS)
    wait_for(lambda: receipts(folder), "the receipt")
    index, fields = notify.wait("STATUS", after=ready + 1)
    while "last upload 20" not in fields["STATUS"]:
        index, fields = notify.wait("STATUS", after=index + 1)
    assert fields["STATUS"].startswith("1 groups, 0 files waiting, last upload 20")

    before_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    daemon.process.send_signal(signal.SIGHUP)
    reloading, fields = notify.wait("RELOADING", "1", after=ready + 1)
    assert before_usec <= int(fields["MONOTONIC_USEC"]) <= before_usec + 60_000_000
    notify.wait("READY", "1", after=reloading + 1)
    daemon.wait_event("config_reloaded")

    config.write_text(config.read_text() + "\n[daemon.oops]\n", encoding="utf-8")
    daemon.process.send_signal(signal.SIGHUP)
    refused, _ = notify.wait("RELOADING", "1", after=reloading + 1)
    notify.wait("READY", "1", after=refused + 1)
    daemon.wait_event("reload_refused")

    assert daemon.stop() == 0
    notify.wait("STOPPING", "1", after=refused + 1)


def test_notify_a_hung_loop_stops_the_pings_and_abort_shows_where(
    tmp_path: Path,
    sandbox: SandboxProcess,
    processes: list[SandboxProcess | DaemonProcess],
    notify: NotifySocket,
) -> None:
    config, _folder = music_group(tmp_path, sandbox)
    hang = tmp_path / "hang-now"
    env = {
        **notify.env,
        "WATCHDOG_USEC": str(WATCHDOG_USEC),
        "DROPD_TEST_HANG_FILE": str(hang),
    }
    daemon = start_daemon(config, tmp_path / "daemon.log", env)
    processes.append(daemon)
    ready, _ = notify.wait("READY", "1")
    notify.wait("WATCHDOG", "1", after=ready)

    hang.touch()
    notify.listen(1.5)  # a ping already on its way may still come
    quiet_from = len(notify.received)
    notify.listen(3.0)  # six intervals
    assert notify.times("WATCHDOG", after=quiet_from) == []
    assert daemon.process.poll() is None, "a hung loop is systemd's to kill, not ours"

    # What systemd does once WatchdogSec passes: SIGABRT; faulthandler names the hung frame.
    daemon.process.send_signal(signal.SIGABRT)
    daemon.process.wait(timeout=30)
    assert "Fatal Python error: Aborted" in daemon.text()
    assert "hang_if_asked" in daemon.text()


def test_notify_ready_comes_after_recovery_and_before_the_upload(
    tmp_path: Path,
    sandbox: SandboxProcess,
    processes: list[SandboxProcess | DaemonProcess],
    notify: NotifySocket,
) -> None:
    config, folder = music_group(tmp_path, sandbox)
    crashed = start_daemon(config, tmp_path / "crashed.log", {"DROPD_TEST_CRASH_AT": "zipped"})
    processes.append(crashed)
    drop(folder, "users.csv", USERS)
    assert crashed.process.wait(timeout=60) == -signal.SIGKILL

    script_sandbox(sandbox, [{"pause": 3}])  # the resent upload takes a while
    daemon = start_daemon(config, tmp_path / "daemon.log", notify.env)
    processes.append(daemon)
    notify.wait("READY", "1")
    events = [event["event"] for event in daemon.events()]
    assert "batch_recovered" in events, "READY=1 only once the spool is read and back in line"
    assert receipts(folder) == [], "READY=1 does not wait for the batches to be sent"
    wait_for(lambda: receipts(folder), "the recovered batch's receipt")


def test_notify_a_socket_that_is_not_there_is_logged_and_harmless(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    config, folder = music_group(tmp_path, sandbox)
    env = {"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")}
    daemon = start_daemon(config, tmp_path / "daemon.log", env)
    processes.append(daemon)
    daemon.wait_event("notify_socket_unavailable")
    drop(folder, "users.csv", USERS)
    wait_for(lambda: receipts(folder), "the receipt")
    assert daemon.stop() == 0
