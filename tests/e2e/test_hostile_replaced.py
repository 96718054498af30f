"""A hostile drop folder: the folder, its `.dropd` or its lock removed, moved or made again
under a running daemon, idle or in the middle of an upload. dropd tells a folder by device,
inode and mount, never by its path: the upload in flight finishes in the folder it began in,
the group shows `Error` at step `folder` while the folder is gone, and the folder now at the
path is locked before dropd touches it, so there is never a second owner."""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from harness import (
    COURSES,
    USERS,
    DaemonProcess,
    SandboxProcess,
    drop,
    music_group,
    read,
    receipts,
    script_sandbox,
    start_daemon,
    start_ready,
    wait_for,
)

Processes = list[SandboxProcess | DaemonProcess]


def start(
    tmp_path: Path, sandbox: SandboxProcess, processes: Processes
) -> tuple[DaemonProcess, Path, Path]:
    config, folder = music_group(tmp_path, sandbox, retry_initial_seconds=0.2, retry_max_seconds=1)
    return start_ready(processes, config, tmp_path / "daemon.log"), config, folder


def count(daemon: DaemonProcess, event: str) -> int:
    return sum(1 for line in daemon.events() if line.get("event") == event)


def locked_by_another(lock: Path) -> bool:
    """True while some other process holds the flock on `lock`."""
    try:
        fd = os.open(lock, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def standby_status(tmp_path: Path, config: Path, processes: Processes) -> dict[str, Any]:
    """Start a second dropd on the same config (its own state_dir) and return its status of
    the group once written: it must stand by, as the first holds the folder."""
    second = tmp_path / "second"
    second.mkdir()
    text = config.read_text(encoding="utf-8").replace(
        f'state_dir = "{tmp_path / "state"}"', f'state_dir = "{second / "state"}"'
    )
    (second / "dropd.toml").write_text(text, encoding="utf-8")
    other = start_daemon(second / "dropd.toml", second / "daemon.log")
    processes.append(other)
    other.wait_event("group_standby", group="music")
    return other.wait_status(role="standby")


def test_folder_moved_away_and_made_again_during_an_upload(
    tmp_path: Path, sandbox: SandboxProcess, processes: Processes
) -> None:
    daemon, config, folder = start(tmp_path, sandbox, processes)
    old = tmp_path / "drop" / "music.old"
    script_sandbox(sandbox, [{"pause": 3}])
    drop(folder, "users.csv", USERS)
    daemon.wait_event("upload_started")
    os.rename(folder, old)
    folder.mkdir()

    # The upload in flight ends in the folder it began in, wherever that is now.
    [receipt] = wait_for(lambda: receipts(old), "the batch filed in the moved folder")
    assert (receipt.parent / "users.csv").read_bytes() == USERS
    lost = daemon.wait_event("group_folder_lost", group="music")
    assert "replaced" in lost["reason"] or "gone" in lost["reason"]
    # The folder now at the path is locked before dropd touches it.
    wait_for(lambda: locked_by_another(folder / ".dropd" / "lock"), "the new folder locked")
    assert standby_status(tmp_path, config, processes)["role"] == "standby"
    drop(folder, "courses.csv", COURSES)
    [sent] = wait_for(lambda: receipts(folder), "a batch sent from the new folder")
    assert {p.name for p in sent.parent.iterdir()} == {"courses.csv", "receipt.json"}
    assert daemon.wait_status(status="Valid")["role"] == "owner"
    assert len(sandbox.uploads()) == 2
    assert not list((old / ".dropd" / "work").iterdir())
    assert daemon.process.poll() is None


def test_folder_removed_during_an_upload_is_said_then_taken_again_when_back(
    tmp_path: Path, sandbox: SandboxProcess, processes: Processes
) -> None:
    daemon, _config, folder = start(tmp_path, sandbox, processes)
    script_sandbox(sandbox, [{"pause": 3}])
    drop(folder, "users.csv", USERS)
    daemon.wait_event("upload_started")
    shutil.rmtree(folder)  # the batch's files go with it: a person deleted them

    entry = daemon.wait_status(status="Error", step="folder")
    assert str(folder) in entry["reason"]
    daemon.wait_event("group_folder_lost", group="music")
    wait_for(lambda: len(sandbox.uploads()) == 1, "the upload in flight answered")
    stuck = count(daemon, "batch_stuck")
    folder.mkdir()
    wait_for(lambda: locked_by_another(folder / ".dropd" / "lock"), "the folder taken again")
    drop(folder, "users.csv", USERS)
    [receipt] = wait_for(lambda: receipts(folder), "a batch sent from the folder made again")
    assert read(receipt)["status"] == 200
    daemon.wait_status(status="Valid")
    assert count(daemon, "batch_stuck") == stuck, "nothing is retried for the lost batch"
    assert not list((folder / ".dropd" / "work").iterdir())
    assert daemon.process.poll() is None


def test_folder_gone_for_good_keeps_the_group_in_error_and_the_daemon_up(
    tmp_path: Path, sandbox: SandboxProcess, processes: Processes
) -> None:
    daemon, _config, folder = start(tmp_path, sandbox, processes)
    os.rename(folder, tmp_path / "elsewhere")
    entry = daemon.wait_status(status="Error", step="folder")
    assert str(folder) in entry["reason"]
    # Still in Error a few looks later (the standby's try every 2 s), never a crash.
    daemon.wait_status(status="Error", step="folder", role="standby")
    assert (tmp_path / "elsewhere" / ".dropd" / "lock").exists(), "the old lock is left"
    assert not locked_by_another(tmp_path / "elsewhere" / ".dropd" / "lock"), "and let go"
    os.rename(tmp_path / "elsewhere", folder)
    daemon.wait_status(status="Valid", role="owner")
    drop(folder, "users.csv", USERS)
    wait_for(lambda: receipts(folder), "the batch sent once the folder is back")
    assert daemon.process.poll() is None


@pytest.mark.parametrize("removed", [".dropd", ".dropd/lock"])
def test_spool_or_lock_removed_while_running_is_taken_again_so_a_second_dropd_stands_by(
    tmp_path: Path, sandbox: SandboxProcess, processes: Processes, removed: str
) -> None:
    daemon, config, folder = start(tmp_path, sandbox, processes)
    gone = folder / removed
    if gone.is_dir():
        shutil.rmtree(gone)
    else:
        gone.unlink()
    daemon.wait_event("group_folder_lost", group="music")
    # (A new file may get the old one's inode number: only the lock held tells.)
    wait_for(lambda: locked_by_another(folder / ".dropd" / "lock"), "a new lock, held")
    assert standby_status(tmp_path, config, processes)["role"] == "standby"
    drop(folder, "users.csv", USERS)
    wait_for(lambda: receipts(folder), "the batch sent by the owner")
    assert daemon.process.poll() is None


def test_folder_replaced_while_a_batch_waits_leaves_it_in_the_old_folder(
    tmp_path: Path, sandbox: SandboxProcess, processes: Processes
) -> None:
    daemon, _config, folder = start(tmp_path, sandbox, processes)
    old = tmp_path / "drop" / "music.old"
    script_sandbox(sandbox, [{"status": 503}] * 6)
    drop(folder, "users.csv", USERS)
    daemon.wait_status(status="Error", step="upload")  # it waits to be tried again
    os.rename(folder, old)
    folder.mkdir()
    lost = daemon.wait_event("group_folder_lost", group="music", batches_left=1)
    assert lost["left_in"] == f"{old}/.dropd/work"
    [left] = (old / ".dropd" / "work").glob("*/files/users.csv")
    assert left.read_bytes() == USERS, "the batch waits, whole, in the old folder"
    drop(folder, "courses.csv", COURSES)
    [receipt] = wait_for(lambda: receipts(folder), "the new folder's batch sent")
    assert [f["name"] for f in read(receipt)["files"]] == ["courses.csv"]
    assert receipts(old) == []
    assert daemon.process.poll() is None
