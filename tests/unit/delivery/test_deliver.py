"""One batch's delivery (daemon/delivery.py) where the folder or dropd itself fails it."""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from daemon.base.errors import SecretError
from daemon.config.model import load_config
from daemon.delivery import deliver as delivery
from daemon.delivery.outcome import ResultKind
from daemon.intake.readiness import FileKind, ReadyFile
from daemon.runtime.group import GroupWorker, build_group
from daemon.spool.manifest import BatchState

MOMENT = datetime(2026, 11, 23, 8, 58, 10, tzinfo=UTC)
USERS = b"user_id,login_id,first_name,last_name,email,status\n"


def worker_with_batch(tmp_path: Path) -> tuple[GroupWorker, str]:
    folder = tmp_path / "music"
    folder.mkdir()
    path = tmp_path / "dropd.toml"
    path.write_text(
        f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n\n'
        '[environments.test]\ntoken_url = "http://127.0.0.1:9/oauth/token"\n'
        'base_url = "http://127.0.0.1:9"\nclient_id = "unit-a"\nclient_secret_env = "S"\n\n'
        f'[groups.music]\nenvironment = "test"\nfolder = "{folder}"\n',
        encoding="utf-8",
    )
    config = load_config(path)
    worker = build_group(
        config, config.groups["music"], SecretError("test", "unset"), lambda: MOMENT
    )
    assert worker.spool.try_lock()
    manifest = worker.spool.open_batch(MOMENT)
    (folder / "users.csv").write_bytes(USERS)
    info = (folder / "users.csv").stat()
    ready = ReadyFile("users.csv", info.st_size, info.st_mtime_ns, FileKind.CSV, (), info.st_ino)
    worker.spool.intend(manifest, [ready])
    assert worker.spool.claim(manifest.batch, ready)
    manifest = worker.spool.load(manifest.batch)
    manifest.state = BatchState.CLAIMED
    worker.spool.save(manifest)
    return worker, manifest.batch


def test_a_bug_met_three_times_files_the_batch_in_failed_so_the_line_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker, batch = worker_with_batch(tmp_path)

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("a bug no test foresaw")

    monkeypatch.setattr(delivery, "pack", broken)
    first, second = (delivery.deliver(worker.delivery, batch) for _ in range(2))
    assert (first.kind, first.step) == (second.kind, second.step) == (ResultKind.WAIT, "internal")
    third = delivery.deliver(worker.delivery, batch)
    assert (third.kind, third.step) == (ResultKind.FAILED, "internal")
    error = worker.group.folder / "failed" / batch / "error.json"
    record = json.loads(error.read_text(encoding="utf-8"))
    assert (
        record["step"] == "internal" and "RuntimeError: a bug no test foresaw" in record["reason"]
    )
    assert (error.parent / "users.csv").read_bytes() == USERS, "its files kept"


def test_a_batch_whose_folder_vanished_leaves_the_line(tmp_path: Path) -> None:
    worker, batch = worker_with_batch(tmp_path)
    shutil.rmtree(worker.group.folder / ".dropd" / "work" / batch)
    result = delivery.deliver(worker.delivery, batch)
    assert result.kind is ResultKind.GONE
    assert "removed" in result.reason and batch in result.reason


def test_a_link_where_batches_are_filed_makes_the_batch_wait_before_any_upload(
    tmp_path: Path,
) -> None:
    worker, batch = worker_with_batch(tmp_path)
    os.symlink(tmp_path, worker.group.folder / "failed")
    result = delivery.deliver(worker.delivery, batch)
    assert (result.kind, result.step) == (ResultKind.WAIT, "folder")
    assert "failed is a symbolic link" in result.reason
    assert worker.spool.load(batch).state is BatchState.CLAIMED, "nothing was done to it"
