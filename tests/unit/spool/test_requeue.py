"""requeue: `dropd retry`'s work on the spool, as another user than the daemon's."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from daemon.base.errors import RequeueError
from daemon.base.timestamps import utc_now
from daemon.spool.requeue import FileChanges, retry_batch
from daemon.spool.store import Spool

BATCH = "20261123T085810.123456Z-3f9a"
NOBODY = 65534  # stands for the daemon's own user


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give files to another user")
def test_requeue_as_root_leaves_the_batch_to_the_daemons_user(tmp_path: Path) -> None:
    folder = tmp_path / "music"
    failed = folder / "failed" / BATCH
    failed.mkdir(parents=True)
    (folder / ".dropd" / "work").mkdir(parents=True)
    (failed / "users.csv").write_text("user_id\n")
    record = {"batch": BATCH, "step": "upload", "reason": "HTTP 403", "attempts": 1}
    (failed / "error.json").write_text(json.dumps(record))
    for path in (folder / ".dropd", folder / ".dropd" / "work", failed, *failed.iterdir()):
        os.chown(path, NOBODY, NOBODY)

    spool = Spool(folder, "music")
    retry_batch(spool, BATCH, utc_now())

    back = spool.batch_dir(BATCH)
    for path in (back, back / "manifest.json", back / "files", back / "files" / "users.csv"):
        assert (path.stat().st_uid, path.stat().st_gid) == (NOBODY, NOBODY), path


def failed_at_validate(tmp_path: Path, files: dict[str, bytes], listed: bool = True) -> Path:
    """failed/BATCH as dropd files a batch whose validation failed, each file as it read it."""
    failed = tmp_path / "failed" / BATCH
    failed.mkdir(parents=True)
    (tmp_path / ".dropd" / "work").mkdir(parents=True)
    for name, data in files.items():
        (failed / name).write_bytes(data)
    record: dict[str, object] = {"batch": BATCH, "step": "validate", "reason": "bad header"}
    if listed:
        record["files_at_failure"] = [
            {"name": n, "bytes": len(d), "sha256": hashlib.sha256(d).hexdigest()}
            for n, d in files.items()
        ]
    (failed / "error.json").write_text(json.dumps(record))
    return failed


def test_retry_refuses_a_batch_failed_at_validate_with_its_files_unchanged(
    tmp_path: Path,
) -> None:
    failed = failed_at_validate(tmp_path, {"users.csv": b"user_id\n"})
    os.utime(failed / "users.csv", (1, 1))  # a touch is no fix
    with pytest.raises(RequeueError) as refused:
        retry_batch(Spool(tmp_path, "music"), BATCH, utc_now())
    said = str(refused.value)
    assert "failed at step validate (bad header)" in said
    assert str(failed) in said and "fix or replace the files there" in said
    assert "--force" in said
    assert (failed / "error.json").is_file(), "nothing moved"


def test_retry_of_a_batch_failed_at_validate_says_which_files_changed(tmp_path: Path) -> None:
    files = {"users.csv": b"user_id\n", "courses.csv": b"course_id\n", "old.csv": b"x\n"}
    failed = failed_at_validate(tmp_path, files)
    (failed / "users.csv").write_bytes(b"user_ix\n")  # same size, other content
    (failed / "old.csv").unlink()
    (failed / "new.csv").write_bytes(b"y\n")
    retried = retry_batch(Spool(tmp_path, "music"), BATCH, utc_now())
    assert retried.changes == FileChanges(
        True, ('"new.csv"', '"users.csv"', '"old.csv" (removed)'), ('"courses.csv"',)
    )
    assert not failed.exists()


def test_retry_force_sends_a_batch_failed_at_validate_as_it_is(tmp_path: Path) -> None:
    failed_at_validate(tmp_path, {"users.csv": b"user_id\n"})
    retried = retry_batch(Spool(tmp_path, "music"), BATCH, utc_now(), force=True)
    assert retried.changes is None and retried.manifest.batch == BATCH


def test_retry_of_an_error_json_without_the_files_lets_it_go_unknown(tmp_path: Path) -> None:
    failed_at_validate(tmp_path, {"users.csv": b"user_id\n"}, listed=False)
    retried = retry_batch(Spool(tmp_path, "music"), BATCH, utc_now())
    assert retried.changes == FileChanges(known=False)
