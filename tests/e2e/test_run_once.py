"""`dropd run --once` as a real process against `dropd sandbox`: it sends what the folders and
their spools hold, then exits 0 when every batch it took was sent, else 1 (2: a bad config)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from guardfiles import held_ids, users_csv
from harness import (
    COURSES,
    DEADLINE,
    USERS,
    DaemonProcess,
    NotifySocket,
    SandboxProcess,
    drop,
    dropd_command,
    errors,
    music_group,
    read,
    receipts,
    script_sandbox,
    sent_files,
)

ENV_WITHOUT_NOTIFY = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}


def start_once(
    processes: list[SandboxProcess | DaemonProcess],
    config: Path,
    log_path: Path,
    env: dict[str, str] | None = None,
) -> DaemonProcess:
    """`dropd run --once --config F`, its stdout and stderr in `log_path`, stopped with the
    test if it is still running then."""
    out = open(log_path, "wb")  # noqa: SIM115 - the child holds it; closed with the test
    process = subprocess.Popen(
        [*dropd_command(), "run", "--once", "--config", str(config)],
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**ENV_WITHOUT_NOTIFY, **(env or {})},
    )
    out.close()
    daemon = DaemonProcess(config, log_path, process, env or {})
    processes.append(daemon)
    return daemon


def finished(daemon: DaemonProcess, deadline: float = DEADLINE) -> tuple[int, dict[str, Any]]:
    """Wait for the run to end; its exit code and its `once_finished` event."""
    code = daemon.process.wait(timeout=deadline)
    [event] = daemon.named("once_finished")
    assert event["exit_code"] == code, event
    return code, event


def test_run_once_sends_what_is_there_files_it_and_exits_0(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    config, folder = music_group(tmp_path, sandbox)
    drop(folder, "users.csv", USERS)
    drop(folder, "courses.csv", COURSES)

    code, event = finished(start_once(processes, config, tmp_path / "once.log"))

    assert code == 0
    assert sent_files(folder) == {"users.csv": [USERS], "courses.csv": [COURSES]}
    assert len(receipts(folder)) == 1 and len(sandbox.uploads()) == 1
    assert not (folder / "users.csv").exists() and not (folder / "failed").exists()
    assert (event["batches"], event["sent"], event["batches_left"]) == (1, 1, 0)


def test_run_once_waits_for_a_file_still_being_written(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    config, folder = music_group(tmp_path, sandbox, settle_seconds=1.5)
    growing = folder / "users.csv"
    growing.write_bytes(USERS[:20])
    daemon = start_once(processes, config, tmp_path / "once.log")
    daemon.wait_event("daemon_ready")
    time.sleep(0.8)  # inside its settle time: the file has not been taken
    growing.write_bytes(USERS)

    code, _event = finished(daemon)

    assert code == 0
    assert sent_files(folder) == {"users.csv": [USERS]}, "the whole file, once it settled"


def test_run_once_sends_a_batch_recovered_from_the_spool(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    config, folder = music_group(tmp_path, sandbox)
    drop(folder, "users.csv", USERS)
    crashed = start_once(
        processes, config, tmp_path / "crash.log", env={"DROPD_TEST_CRASH_AT": "zipped"}
    )
    assert crashed.process.wait(timeout=DEADLINE) == -signal.SIGKILL
    assert not receipts(folder) and list((folder / ".dropd" / "work").iterdir())

    code, event = finished(start_once(processes, config, tmp_path / "once.log"))

    assert code == 0 and event["sent"] == 1
    assert sent_files(folder) == {"users.csv": [USERS]}
    assert not list((folder / ".dropd" / "work").iterdir())


def test_run_once_exits_1_when_a_batch_fails_at_validate(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    config, folder = music_group(tmp_path, sandbox)
    drop(folder, "people.csv", b"id,name\n1,x\n")

    code, event = finished(start_once(processes, config, tmp_path / "once.log"))

    assert code == 1
    [error] = errors(folder)
    assert read(error)["step"] == "validate"
    assert (event["failed"], event["sent"]) == (1, 0)
    assert "1 failed" in event["summary"] and event["level"] == "warning"
    assert not sandbox.uploads()


def test_run_once_exits_1_when_the_guard_holds_a_batch(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    config, folder = music_group(tmp_path, sandbox)
    drop(folder, "users.csv", users_csv(200, deleted=150))

    code, event = finished(start_once(processes, config, tmp_path / "once.log"))

    assert code == 1
    assert len(held_ids(folder)) == 1 and event["held"] == 1
    assert not sandbox.uploads()


def test_run_once_keeps_running_while_an_upload_waits_for_a_retry(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    config, folder = music_group(tmp_path, sandbox, retry_initial_seconds=0.5, retry_max_seconds=1)
    script_sandbox(sandbox, [{"status": 503}, {"status": 503}])
    drop(folder, "users.csv", USERS)

    daemon = start_once(processes, config, tmp_path / "once.log")
    code, event = finished(daemon)

    assert code == 0 and event["sent"] == 1
    assert len(daemon.named("batch_waits")) == 2
    assert sent_files(folder) == {"users.csv": [USERS]}


def test_run_once_with_nothing_there_exits_0_at_once_saying_so(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    config, _folder = music_group(tmp_path, sandbox, settle_seconds=30, quiet_seconds=30)
    started = time.monotonic()

    code, event = finished(start_once(processes, config, tmp_path / "once.log"))

    assert code == 0
    assert time.monotonic() - started < 15, "no settle or batch window is waited for"
    assert event["batches"] == 0 and event["summary"].startswith("nothing to send")


def test_run_once_exits_1_when_a_group_folder_is_missing(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    config, folder = music_group(tmp_path, sandbox)
    folder.rmdir()

    code, event = finished(start_once(processes, config, tmp_path / "once.log"))

    assert code == 1
    assert event["blocked"] == ["music"]


def test_run_once_exits_2_on_a_bad_config(
    tmp_path: Path, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    config = tmp_path / "dropd.toml"
    config.write_text('[daemon]\nlog_level = "loud"\n', encoding="utf-8")
    daemon = start_once(processes, config, tmp_path / "once.log")
    assert daemon.process.wait(timeout=DEADLINE) == 2
    assert "daemon.log_level" in daemon.text()


def test_run_once_under_systemd_says_ready_and_stops_cleanly_on_sigterm(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    # A quiet window far longer than the test: only SIGTERM can end this run.
    config, folder = music_group(tmp_path, sandbox, quiet_seconds=600, max_wait_seconds=600)
    drop(folder, "users.csv", USERS)
    notify = NotifySocket()
    try:
        daemon = start_once(processes, config, tmp_path / "once.log", env=notify.env)
        notify.wait("READY", "1")
        daemon.wait_event("file_claimed")
        daemon.process.send_signal(signal.SIGTERM)
        code, event = finished(daemon)
        notify.wait("STOPPING", "1")
    finally:
        notify.close()

    assert code == 1, "its batch was left for the next run"
    assert event["batches_left"] == 1
    assert daemon.named("daemon_stopped")
    assert not receipts(folder) and not (folder / "failed").exists()
    assert len(list((folder / ".dropd" / "work").iterdir())) == 1
