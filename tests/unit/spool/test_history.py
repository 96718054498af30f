"""What a group folder says of its past (daemon/history.py): failed, last upload, last failure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from daemon.spool.history import FolderHistory, failed_batch_ids, folder_history, held_batches

OLD, MID, NEW = (
    "20261120T080000.000000Z-aaaa",
    "20261122T080000.000000Z-bbbb",
    "20261123T080000.000000Z-cccc",
)


def batch(parent: Path, batch_id: str, record: str, **fields: Any) -> Path:
    folder = parent / batch_id
    folder.mkdir(parents=True)
    (folder / "users.csv").write_text("x\n")
    (folder / record).write_text(json.dumps({"batch": batch_id, **fields}))
    return folder


def sent(folder: Path, day: str, batch_id: str, finished: str) -> Path:
    return batch(folder / "sent" / day, batch_id, "receipt.json", finished=finished)


def failed(folder: Path, batch_id: str, step: str = "validate", reason: str = "bad") -> Path:
    return batch(folder / "failed", batch_id, "error.json", step=step, reason=reason)


def test_folder_history_of_a_new_folder_is_empty(tmp_path: Path) -> None:
    assert folder_history(tmp_path) == FolderHistory(0, None, None)
    assert folder_history(tmp_path / "missing") == FolderHistory(0, None, None)


def test_folder_history_last_upload_is_the_newest_receipt(tmp_path: Path) -> None:
    sent(tmp_path, "2026-11-20", OLD, "2026-11-20T08:00:01.000Z")
    sent(tmp_path, "2026-11-22", MID, "2026-11-22T08:00:01.000Z")
    (tmp_path / "sent" / "2026-11-23").mkdir()  # a day with nothing in it
    history = folder_history(tmp_path)
    assert history == FolderHistory(0, "2026-11-22T08:00:01.000Z", None)


def test_folder_history_counts_failed_batches_and_the_last_failure(tmp_path: Path) -> None:
    failed(tmp_path, OLD)
    sent(tmp_path, "2026-11-22", MID, "2026-11-22T08:00:01.000Z")
    failed(tmp_path, NEW, "upload", "the server refused the upload with HTTP 400")
    (tmp_path / "failed" / "notes").mkdir()  # not a batch folder
    (tmp_path / "failed" / "README").write_text("not a batch")
    history = folder_history(tmp_path)
    assert history.failed_batches == 2
    assert history.last_upload == "2026-11-22T08:00:01.000Z"
    assert history.last_failure == ("upload", "the server refused the upload with HTTP 400")


def test_folder_history_a_later_sent_batch_clears_the_failure(tmp_path: Path) -> None:
    failed(tmp_path, MID)
    sent(tmp_path, "2026-11-23", NEW, "2026-11-23T08:00:01.000Z")
    assert folder_history(tmp_path) == FolderHistory(1, "2026-11-23T08:00:01.000Z", None)


def test_folder_history_prefers_dropds_record_beside_a_namesake(tmp_path: Path) -> None:
    folder = sent(tmp_path, "2026-11-23", NEW, "dropped by a person")
    (folder / "receipt.dropd.json").write_text(json.dumps({"finished": "2026-11-23T08:00:09Z"}))
    assert folder_history(tmp_path).last_upload == "2026-11-23T08:00:09Z"


def test_folder_history_a_failed_batch_without_its_record_still_says_so(tmp_path: Path) -> None:
    (tmp_path / "failed" / NEW).mkdir(parents=True)
    step, reason = folder_history(tmp_path).last_failure or ("", "")
    assert step == "unknown" and NEW in reason and "error.json" in reason


def held(folder: Path, batch_id: str, reason: str = "users.csv has 150 of 200 deleted") -> Path:
    return batch(folder / "held", batch_id, "held.json", step="guard", reason=reason)


def test_folder_history_held_batches_with_their_reasons(tmp_path: Path) -> None:
    held(tmp_path, NEW, "newest")
    held(tmp_path, OLD, "oldest")
    (tmp_path / "held" / MID).mkdir()  # no held.json: still held, said so
    found = held_batches(tmp_path)
    assert list(found) == [OLD, MID, NEW]
    assert found[OLD] == "oldest" and found[NEW] == "newest"
    assert "has no readable held.json" in found[MID]
    assert held_batches(tmp_path, {OLD: "known"})[OLD] == "known", "a known reason is kept"
    assert held_batches(tmp_path / "missing") == {}


def test_folder_history_a_batch_held_after_a_failure_is_the_newer_news(tmp_path: Path) -> None:
    failed(tmp_path, MID)
    held(tmp_path, NEW)
    assert folder_history(tmp_path).last_failure is None
    failed(tmp_path, "20261124T080000.000000Z-dddd", "upload", "HTTP 403")
    assert folder_history(tmp_path).last_failure == ("upload", "HTTP 403")


def test_folder_history_names_the_newest_failed_batch(tmp_path: Path) -> None:
    failed(tmp_path, OLD)
    failed(tmp_path, MID)
    assert folder_history(tmp_path).newest_failed == MID
    assert failed_batch_ids(tmp_path) == [OLD, MID]
    assert failed_batch_ids(tmp_path / "missing") == []
