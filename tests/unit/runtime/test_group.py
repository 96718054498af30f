"""Tests of a group's scan and claims (daemon/runtime/group.py and its parts), on real folders."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from daemon.base import durable
from daemon.config.model import DaemonSettings
from daemon.intake.readiness import FileKind, ReadyFile
from daemon.runtime.group import GroupWorker
from daemon.spool import store as spool_module
from daemon.spool.manifest import BatchState, Manifest
from daemon.spool.store import Spool
from unit.workers import music_worker

MOMENT = datetime(2026, 11, 23, 8, 58, 10, tzinfo=UTC)
USERS = b"user_id,login_id,first_name,last_name,email,status\n"
AT_ONCE = DaemonSettings(settle_seconds=0.0)


def make_worker(tmp_path: Path, markers: str = "auto") -> GroupWorker:
    made = music_worker(tmp_path, MOMENT, markers)
    assert made.lease.take(0.0)
    return made


def record_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, object]]:
    """Every fsync of a folder and every manifest saved, in order."""
    done: list[tuple[str, object]] = []
    fsync_dir, save = durable.fsync_dir, Spool.save

    def fsync_recorded(path: Path) -> None:
        done.append(("fsync", Path(path)))
        fsync_dir(path)

    def save_recorded(spool: Spool, manifest: Manifest) -> None:
        done.append(("save", manifest.state))
        save(spool, manifest)

    monkeypatch.setattr(spool_module, "fsync_dir", fsync_recorded)
    monkeypatch.setattr(Spool, "save", save_recorded)
    return done


def test_group_scan_claims_a_burst_with_one_fsync_per_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = make_worker(tmp_path)
    folder = worker.group.folder
    for n in range(200):
        (folder / f"f{n:03d}.csv").write_bytes(USERS)
    done = record_fsyncs(monkeypatch)

    worker.scan(0.0, AT_ONCE)

    assert worker.line.open is not None
    files = worker.spool.files_dir(worker.line.open.batch_id)
    assert len(os.listdir(files)) == 200
    assert done.count(("fsync", files)) == 1
    assert done.count(("fsync", worker.spool.root.io_path)) == 1
    assert not worker.closer.unsynced


def test_group_close_makes_the_claims_durable_before_the_manifest_says_claimed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = make_worker(tmp_path)
    (worker.group.folder / "users.csv").write_bytes(USERS)
    done = record_fsyncs(monkeypatch)
    worker.scan(0.0, AT_ONCE)
    assert worker.line.open is not None
    files = worker.spool.files_dir(worker.line.open.batch_id)

    worker.close_open()

    claimed = done.index(("save", BatchState.CLAIMED))
    assert done.index(("fsync", files)) < claimed
    assert done.index(("fsync", worker.spool.root.io_path)) < claimed
    assert done.count(("fsync", files)) == 1  # the scan's: the close has nothing more to sync


def test_group_recovery_syncs_an_open_batch_before_closing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A crash may have come between a claim's rename and its fsync.
    worker = make_worker(tmp_path)
    before = Spool(worker.group.folder, "music")
    before.open()
    manifest = before.open_batch(MOMENT)
    dropped = worker.group.folder / "users.csv"
    dropped.write_bytes(USERS)
    ready = ReadyFile("users.csv", len(USERS), dropped.stat().st_mtime_ns, FileKind.CSV)
    assert before.claim(manifest.batch, ready, sync=False)
    done = record_fsyncs(monkeypatch)

    worker.recovery.recover()

    assert list(worker.line.waiting) == [manifest.batch]
    files = worker.spool.files_dir(manifest.batch)
    assert done.index(("fsync", files)) < done.index(("save", BatchState.CLAIMED))


def test_group_scan_a_repeated_name_closes_the_first_batch_with_its_claims_synced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = make_worker(tmp_path)
    folder = worker.group.folder
    (folder / "users.csv").write_bytes(USERS)
    worker.scan(0.0, AT_ONCE)
    assert worker.line.open is not None
    first = worker.line.open.batch_id
    # As if this scan had claimed a file into the open batch before it came to users.csv
    # again: a repeated name closes the batch in the middle of the scan, before the scan's own sync.
    worker.closer.claimed_into(first)
    (folder / "users.csv").write_bytes(USERS + b"u2,u2@example.edu,G,U,u2@example.edu,active\n")
    done = record_fsyncs(monkeypatch)

    worker.scan(1.0, AT_ONCE)

    assert list(worker.line.waiting) == [first]
    assert worker.spool.load(first).state is BatchState.CLAIMED
    assert done.index(("fsync", worker.spool.files_dir(first))) < done.index(
        ("save", BatchState.CLAIMED)
    )
    assert worker.line.open is not None and worker.line.open.batch_id != first
    assert not worker.closer.unsynced


def test_group_scan_a_settled_file_waiting_for_its_marker_sets_no_past_timer(
    tmp_path: Path,
) -> None:
    worker = make_worker(tmp_path, markers="required")
    (worker.group.folder / "users.csv").write_bytes(USERS)
    settings = DaemonSettings(settle_seconds=5.0)
    worker.scan(0.0, settings)
    assert worker.intake.next_scan == 5.0
    worker.scan(5.0, settings)
    assert worker.line.open is None
    assert worker.intake.next_scan > 5.0  # else the scheduler would wake at once, again and again


def test_group_scan_reads_the_spool_manifests_only_when_a_batch_is_new(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = make_worker(tmp_path)
    listed: list[int] = []
    batch_ids = worker.spool.batch_ids

    def batch_ids_counted() -> list[str]:
        listed.append(1)
        return batch_ids()

    monkeypatch.setattr(worker.spool, "batch_ids", batch_ids_counted)
    worker.scan(0.0, AT_ONCE)
    worker.scan(1.0, AT_ONCE)
    assert listed == []

    # `dropd retry` puts a batch in the spool while we run.
    other = Spool(worker.group.folder, "music")
    other.open()
    manifest = other.open_batch(MOMENT)
    dropped = worker.group.folder / "users.csv"
    dropped.write_bytes(USERS)
    ready = ReadyFile("users.csv", len(USERS), dropped.stat().st_mtime_ns, FileKind.CSV)
    assert other.claim(manifest.batch, ready)
    manifest.state = BatchState.CLAIMED
    other.save(manifest)

    worker.scan(2.0, AT_ONCE)
    assert listed == [1]
    assert list(worker.line.waiting) == [manifest.batch]
