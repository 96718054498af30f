"""One batch's delivery (daemon/delivery/deliver.py) where the folder or dropd itself fails it."""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from daemon.base.errors import SecretError, TokenError
from daemon.base.steps import Step
from daemon.config.load import load_config
from daemon.delivery import deliver as delivery
from daemon.delivery.outcome import ResultKind
from daemon.intake.readiness import FileKind, ReadyFile
from daemon.provider import upload as api
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


def test_a_retryable_answer_says_dropd_tries_again_until_it_gives_up(tmp_path: Path) -> None:
    worker, batch = worker_with_batch(tmp_path)
    manifest = worker.spool.load(batch)
    outcome = api.UploadOutcome(api.OutcomeKind.RETRY, "the server answered HTTP 503", 503)
    retried = delivery._settle(worker.delivery, manifest, outcome)
    assert (retried.kind, retried.step) == (ResultKind.RETRY, Step.UPLOAD)
    assert retried.reason == "the server answered HTTP 503; dropd tries again"

    manifest.first_attempt = "2026-11-20T08:00:00.000Z"  # days before MOMENT
    manifest.attempts = 9
    failed = delivery._settle(worker.delivery, manifest, outcome)
    assert (failed.kind, failed.step) == (ResultKind.FAILED, Step.UPLOAD)
    assert failed.reason.startswith("the server answered HTTP 503; dropd gave up after ")
    assert "tries again" not in failed.reason
    error = worker.group.folder / "failed" / batch / "error.json"
    record = json.loads(error.read_text(encoding="utf-8"))
    assert (record["step"], record["reason"], record["status"]) == ("upload", failed.reason, 503)


def test_a_token_error_says_dropd_tries_again_only_when_it_may_pass() -> None:
    passing = TokenError("test", "the token endpoint answered HTTP 503", retryable=True)
    assert delivery._token_reason(passing) == (
        "the token endpoint answered HTTP 503; dropd tries again"
    )
    assert (
        str(passing) == "environment test: the token endpoint answered HTTP 503; dropd tries again"
    )
    refused = TokenError("test", "the token endpoint rejected client 'c'", rejected=True)
    assert delivery._token_reason(refused) == "the token endpoint rejected client 'c'"
