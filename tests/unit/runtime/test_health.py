"""A group's health: the failed count is what failed/ holds now, and an Error about a failed
batch names it and ends once that batch has left failed/ or a later one is sent."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

from daemon.base.folders import Folder
from daemon.base.steps import Step
from daemon.delivery.outcome import BatchResult, ResultKind
from daemon.runtime.health import GroupHealth
from daemon.spool.history import folder_history

NOW = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)
OLD, NEW = "20261123T085810.123456Z-3f9a", "20261123T095810.123456Z-4b0c"


def failed(folder: Path, batch_id: str) -> Path:
    where = folder / "failed" / batch_id
    where.mkdir(parents=True)
    (where / "error.json").write_text(json.dumps({"step": "validate", "reason": "bad header"}))
    return where


def test_health_counts_a_retried_batch_out_of_failed(tmp_path: Path) -> None:
    health = GroupHealth("music")
    failed(tmp_path, OLD)
    health.record(BatchResult(ResultKind.FAILED, Step.UPLOAD, "HTTP 403"), NOW)
    newest = failed(tmp_path, NEW)
    health.record(
        BatchResult(ResultKind.FAILED, Step.VALIDATE, "bad header", destination=newest), NOW
    )
    assert (health.failed_batches, health.error_batch, health.last_failed) == (2, NEW, NEW)
    with Folder.at(tmp_path) as root:
        health.look_at_failed(root)
        assert health.failed_batches == 2 and health.error is not None
        shutil.rmtree(newest)  # what `dropd retry` does: the batch leaves failed/
        health.look_at_failed(root, recount=True)
    assert (health.failed_batches, health.last_failed) == (1, OLD)
    assert health.error is None and health.error_batch is None


def test_health_a_person_removing_a_failed_batch_is_seen_without_a_recount(
    tmp_path: Path,
) -> None:
    failed(tmp_path, OLD)
    failed(tmp_path, NEW)
    health = GroupHealth("music")
    with Folder.at(tmp_path) as root:
        health.restore(folder_history(tmp_path), root)
        assert (health.failed_batches, health.error_batch) == (2, NEW)
        assert health.error == ("validate", "bad header")
        health.look_at_failed(root)
        shutil.rmtree(tmp_path / "failed" / OLD)
        (tmp_path / "failed").touch()  # the rmdir moved its mtime; make sure of it here
        health.look_at_failed(root)
    assert health.failed_batches == 1 and health.error_batch == NEW


def test_health_a_later_sent_batch_ends_the_error_of_a_failed_one(tmp_path: Path) -> None:
    health = GroupHealth("music")
    where = failed(tmp_path, OLD)
    health.record(BatchResult(ResultKind.FAILED, Step.VALIDATE, "bad", destination=where), NOW)
    health.record(BatchResult(ResultKind.SENT, destination=tmp_path / "sent" / NEW), NOW)
    assert health.error is None and health.error_batch is None
    assert health.failed_batches == 1 and health.last_failed == OLD
