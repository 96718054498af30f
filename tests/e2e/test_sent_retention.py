"""sent_retention_days: the running daemon prunes old dated folders under sent/, nothing else."""

from __future__ import annotations

from pathlib import Path

from harness import (
    USERS,
    DaemonProcess,
    SandboxProcess,
    drop,
    music_group,
    receipts,
    start_daemon,
    wait_for,
)


def test_retention_prunes_old_dated_folders_and_keeps_todays(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    config, folder = music_group(tmp_path, sandbox, sent_retention_days=7)
    old_batch = folder / "sent" / "2020-01-01" / "20200101T000000.000000Z-0a"
    old_batch.mkdir(parents=True)
    (old_batch / "users.csv").write_bytes(USERS)
    (folder / "sent" / "kept-by-hand").mkdir()

    daemon = start_daemon(config, tmp_path / "daemon.log")
    processes.append(daemon)
    pruned = daemon.wait_event("sent_pruned", group="music")
    assert pruned["folder"] == str(old_batch.parent) and pruned["batches"] == 1
    drop(folder, "users.csv", USERS)
    [receipt] = wait_for(lambda: receipts(folder), "today's receipt")
    assert not old_batch.parent.exists()
    assert (folder / "sent" / "kept-by-hand").is_dir() and receipt.exists()
    assert daemon.stop() == 0
