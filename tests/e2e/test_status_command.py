"""`dropd status` against a real daemon and sandbox, in every state a group can show."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from harness import (
    USERS,
    DaemonProcess,
    SandboxProcess,
    drop,
    errors,
    music_group,
    read,
    receipts,
    run_dropd,
    sandbox_environment,
    script_sandbox,
    start_ready,
    toml_config,
    wait_for,
    write_secret,
)

Processes = list[SandboxProcess | DaemonProcess]
BAD_HEADER = b"user,login\nu1,a@example.edu\n"
NO_FILES = {"status": 400, "body": {"message": "No files to process", "fileErrors": None}}


def status(config: Path) -> tuple[int, dict[str, Any]]:
    """`dropd status --json`: its exit code and report."""
    done = run_dropd("status", "--config", str(config), "--json")
    assert done.stderr == "", done.stderr
    return done.returncode, json.loads(done.stdout)


def status_text(config: Path) -> tuple[int, str]:
    done = run_dropd("status", "--config", str(config))
    return done.returncode, done.stdout


def only_group(report: dict[str, Any]) -> dict[str, Any]:
    [group] = report["groups"]
    return dict(group)


def test_status_valid_before_and_after_a_sent_batch(
    tmp_path: Path, sandbox: SandboxProcess, processes: Processes
) -> None:
    config, folder = music_group(tmp_path, sandbox, {"friendly_name": "Jacobs School of Music"})
    code, text = status_text(config)
    assert code == 1 and text.startswith("no status yet:") and "has not run" in text

    daemon = start_ready(processes, config, tmp_path / "daemon.log")
    daemon.wait_status(status="Valid")
    code, report = status(config)
    assert code == 0, report
    assert report["running"] is True and report["pid"] == daemon.process.pid
    group = only_group(report)
    assert group["friendly_name"] == "Jacobs School of Music"
    assert (group["status"], group["step"], group["reason"]) == ("Valid", "", "")
    assert (group["last_upload"], group["batches_failed"], group["role"]) == (None, 0, "owner")
    code, text = status_text(config)
    assert code == 0
    assert text.startswith(f"dropd running (pid {daemon.process.pid}), status as of ")
    assert "music (Jacobs School of Music)" in text and "never" in text

    drop(folder, "users.csv", USERS)
    wait_for(lambda: receipts(folder), "the receipt")
    daemon.wait_status(status="Valid", files_waiting=0)
    code, report = status(config)
    group = only_group(report)
    assert code == 0 and group["status"] == "Valid"
    assert group["last_upload"] is not None and group["batches_failed"] == 0


def test_status_processing_while_a_batch_is_under_way(
    tmp_path: Path, sandbox: SandboxProcess, processes: Processes
) -> None:
    config, folder = music_group(tmp_path, sandbox)
    daemon = start_ready(processes, config, tmp_path / "daemon.log")
    daemon.wait_status(status="Valid")
    script_sandbox(sandbox, [{"hang": 8}])  # the upload is answered by nothing for 8 s
    drop(folder, "users.csv", USERS)
    daemon.wait_event("upload_started")
    daemon.wait_status(status="Processing")
    code, report = status(config)
    group = only_group(report)
    assert code == 0, "Processing is not an error"
    assert group["status"] == "Processing" and group["files_waiting"] == 1


def test_status_error_at_step_token_when_the_client_is_refused(
    tmp_path: Path, sandbox: SandboxProcess, processes: Processes
) -> None:
    config, folder = music_group(tmp_path, sandbox)
    write_secret(tmp_path / "test.secret", "not-the-secret")
    daemon = start_ready(processes, config, tmp_path / "daemon.log")
    drop(folder, "users.csv", USERS)
    daemon.wait_status(status="Error")
    code, report = status(config)
    group = only_group(report)
    assert code == 1
    assert group["step"] == "token"
    assert "rejected client 'unit-a'" in group["reason"]
    assert "check client_id and the secret" in group["reason"]
    assert group["files_waiting"] == 1 and group["batches_failed"] == 0, "the batch waits"
    code, text = status_text(config)
    assert code == 1 and "rejected client 'unit-a'" in text


def test_status_error_at_step_folder_when_the_folder_is_removed(
    tmp_path: Path, sandbox: SandboxProcess, processes: Processes
) -> None:
    config, folder = music_group(tmp_path, sandbox, poll_seconds=0.3)
    daemon = start_ready(processes, config, tmp_path / "daemon.log")
    daemon.wait_status(status="Valid")
    shutil.rmtree(folder)
    daemon.wait_status(status="Error", step="folder")
    code, report = status(config)
    group = only_group(report)
    assert code == 1
    assert str(folder) in group["reason"] and "check the share is mounted" in group["reason"]


def test_status_error_when_the_last_batch_failed_validation(
    tmp_path: Path, sandbox: SandboxProcess, processes: Processes
) -> None:
    config, folder = music_group(tmp_path, sandbox)
    daemon = start_ready(processes, config, tmp_path / "daemon.log")
    drop(folder, "users.csv", BAD_HEADER)
    wait_for(lambda: errors(folder), "the failed batch")
    daemon.wait_status(status="Error", batches_failed=1)
    code, report = status(config)
    group = only_group(report)
    assert code == 1 and group["step"] == "validate"
    assert "users.csv" in group["reason"] and "header" in group["reason"]

    drop(folder, "users.csv", USERS)  # a batch that goes up makes the group Valid again
    wait_for(lambda: receipts(folder), "the receipt")
    daemon.wait_status(status="Valid", batches_failed=1)
    assert status(config)[0] == 0


def test_status_after_stop_and_restart_keeps_the_history(
    tmp_path: Path, sandbox: SandboxProcess, processes: Processes
) -> None:
    config, folder = music_group(tmp_path, sandbox)
    first = start_ready(processes, config, tmp_path / "first.log")
    drop(folder, "users.csv", USERS)
    [receipt] = wait_for(lambda: receipts(folder), "the receipt")
    script_sandbox(sandbox, [NO_FILES])
    drop(folder, "users.csv", USERS)
    wait_for(lambda: errors(folder), "the batch the sandbox refused")
    first.wait_status(status="Error", step="upload", batches_failed=1)
    assert first.stop() == 0

    code, report = status(config)
    assert code == 1 and report["running"] is False and report["pid"] == first.process.pid
    assert report["age_seconds"] >= 0
    code, text = status_text(config)
    header = text.splitlines()[0]
    assert header.startswith(f"dropd is not running (pid {first.process.pid} is gone); ")
    assert "last known status from " in header and " ago)" in header

    second = start_ready(processes, config, tmp_path / "second.log")
    second.wait_status()
    code, report = status(config)
    group = only_group(report)
    assert code == 1 and report["running"] is True and report["pid"] == second.process.pid
    assert (group["status"], group["step"]) == ("Error", "upload")
    assert "No files to process" in group["reason"]
    assert group["batches_failed"] == 1
    assert group["last_upload"] == read(receipt)["finished"]


def test_status_standby_of_a_second_daemon_on_the_same_folder(
    tmp_path: Path, sandbox: SandboxProcess, processes: Processes
) -> None:
    folder = tmp_path / "drop" / "music"
    folder.mkdir(parents=True)
    secret = write_secret(tmp_path / "test.secret", "secret-a-1234")
    env = {"test": sandbox_environment(sandbox, "unit-a", secret)}
    configs = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        group = {"environment": "test", "folder": str(folder)}
        configs.append(toml_config(tmp_path / name, env, {"music": group}))
    owner = start_ready(processes, configs[0], tmp_path / "a.log")
    owner.wait_event("group_owned", group="music")
    standby = start_ready(processes, configs[1], tmp_path / "b.log")
    standby.wait_status(role="standby")
    owner.wait_status(role="owner")

    code, report = status(configs[1])
    group = only_group(report)
    assert code == 0 and (group["status"], group["role"]) == ("Valid", "standby")
    code, report = status(configs[0])
    assert code == 0 and only_group(report)["role"] == "owner", report
    assert "role:           standby" in status_text(configs[1])[1]


def test_status_a_group_the_daemon_has_not_loaded_and_a_bad_config(
    tmp_path: Path, sandbox: SandboxProcess, processes: Processes
) -> None:
    config, _ = music_group(tmp_path, sandbox)
    daemon = start_ready(processes, config, tmp_path / "daemon.log")
    daemon.wait_status(status="Valid")
    (tmp_path / "drop" / "art").mkdir()
    text = config.read_text(encoding="utf-8")
    config.write_text(
        text + f'\n[groups.art]\nenvironment = "test"\nfolder = "{tmp_path / "drop" / "art"}"\n',
        encoding="utf-8",
    )
    code, report = status(config)
    assert code == 1
    assert [g["status"] for g in report["groups"]] == ["Valid", "Unknown"]
    assert "has not loaded this group; reload it" in report["groups"][1]["reason"]

    config.write_text(text + "\n[groups.art]\nfolder = 3\n", encoding="utf-8")
    done = run_dropd("status", "--config", str(config))
    # The config is broken, yet the running dropd's status shows, with the problems.
    assert done.returncode == 2 and f"dropd running (pid {daemon.process.pid})" in done.stdout
    assert "music" in done.stdout and "status:         Valid" in done.stdout
    assert "groups.art.folder:" in done.stderr and "groups.art.environment:" in done.stderr
