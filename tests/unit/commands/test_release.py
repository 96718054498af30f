"""release: `dropd release`'s work on the spool (daemon/release.py), and a retry of a batch
that was released."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from daemon.base.errors import RequeueError
from daemon.commands.release import release_held, releaser
from daemon.spool.manifest import BatchState, Release
from daemon.spool.requeue import STAGING_PREFIX, finish_staged, retry_batch
from daemon.spool.store import Spool

BATCH = "20261123T085810.123456Z-3f9a"
MOMENT = datetime(2026, 11, 24, 9, 0, 0, tzinfo=UTC)
HELD = {
    "batch": BATCH,
    "group": "music",
    "step": "guard",
    "reason": "users.csv has 150 of its 200 rows deleted (75%), ...",
    "guard": [{"file": "users.csv", "rows": 200, "deleted": 150, "share": 75.0, "limit": 50.0}],
    "attempts": 1,
    "created": "2026-11-23T08:58:10.123Z",
    "earlier_errors": [{"step": "upload", "status": 503}],
}


def held_batch(folder: Path, record: dict[str, Any] | None = None, name: str = "held.json") -> Path:
    held = folder / "held" / BATCH
    held.mkdir(parents=True)
    (held / "users.csv").write_text("user_id\n")
    (held / name).write_text(json.dumps(record or HELD))
    return held


def test_release_puts_the_held_batch_in_line_released(tmp_path: Path) -> None:
    held_batch(tmp_path)
    spool = Spool(tmp_path, "music")
    manifest = release_held(spool, BATCH, MOMENT, "alice")

    assert not (tmp_path / "held" / BATCH).exists()
    assert sorted(os.listdir(spool.files_dir(BATCH))) == ["users.csv"]
    assert (spool.batch_dir(BATCH) / "previous-held.json").is_file()
    on_disk = spool.load(BATCH)
    assert on_disk == manifest
    assert on_disk.state is BatchState.CLAIMED
    assert on_disk.released == Release("alice", "2026-11-24T09:00:00.000Z")
    assert on_disk.queued == "2026-11-24T09:00:00.000000Z", "at the back of the line"
    assert on_disk.created == HELD["created"] and on_disk.attempts == 1
    assert [e["step"] for e in on_disk.history] == ["upload", "guard"]
    assert spool.batch_ids() == [BATCH]


def test_release_takes_held_dropd_json_beside_a_dropped_held_json(tmp_path: Path) -> None:
    held = held_batch(tmp_path, name="held.dropd.json")
    (held / "held.json").write_text("a dropped file of that name")
    spool = Spool(tmp_path, "music")
    release_held(spool, BATCH, MOMENT, "alice")
    assert sorted(os.listdir(spool.files_dir(BATCH))) == ["held.json", "users.csv"]


@pytest.mark.parametrize(
    ("place", "why"),
    [
        (None, "there is no held batch"),
        ("sent/2026-11-23", "it was sent"),
        ("failed", "it failed"),
        (".dropd/work", "it is in line"),
    ],
)
def test_release_refuses_a_batch_that_is_not_held(
    tmp_path: Path, place: str | None, why: str
) -> None:
    if place is not None:
        (tmp_path / place / BATCH).mkdir(parents=True)
    with pytest.raises(RequeueError, match=why):
        release_held(Spool(tmp_path, "music"), BATCH, MOMENT, "alice")


def test_release_refuses_a_folder_without_held_json(tmp_path: Path) -> None:
    (tmp_path / "held" / BATCH).mkdir(parents=True)
    with pytest.raises(RequeueError, match=r"has no held\.json, so it is not a batch dropd held"):
        release_held(Spool(tmp_path, "music"), BATCH, MOMENT, "alice")
    assert (tmp_path / "held" / BATCH).is_dir()


def test_release_interrupted_is_finished_forwards(tmp_path: Path) -> None:
    # A crash after step 2: the manifest staged, held.json aside, the files still in held/.
    held = held_batch(tmp_path)
    spool = Spool(tmp_path, "music")
    spool.open()
    staging = spool.work / f"{STAGING_PREFIX}{BATCH}"
    staging.mkdir(parents=True)
    (staging / "manifest.json").write_text(
        json.dumps({"batch": BATCH, "group": "music", "state": "claimed", "created": "x"})
    )
    os.rename(held / "held.json", staging / "previous-held.json")

    assert finish_staged(spool) == [BATCH]
    assert not held.exists()
    assert os.listdir(spool.files_dir(BATCH)) == ["users.csv"]


def test_release_then_failed_batch_retried_stays_released(tmp_path: Path) -> None:
    failed = tmp_path / "failed" / BATCH
    failed.mkdir(parents=True)
    (failed / "users.csv").write_text("user_id\n")
    record = {"batch": BATCH, "step": "upload", "reason": "HTTP 403", "released": True}
    record.update(released_by="alice", released_at="2026-11-24T09:00:00.000Z")
    (failed / "error.json").write_text(json.dumps(record))
    manifest = retry_batch(Spool(tmp_path, "music"), BATCH, MOMENT).manifest
    assert manifest.released == Release("alice", "2026-11-24T09:00:00.000Z")


def test_release_retry_points_a_held_batch_to_release(tmp_path: Path) -> None:
    held_batch(tmp_path)
    with pytest.raises(RequeueError, match=r"the guard holds it .*`dropd release`"):
        retry_batch(Spool(tmp_path, "music"), BATCH, MOMENT)


def test_release_releaser_names_the_person_behind_sudo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SUDO_USER", raising=False)
    alone = releaser()
    assert alone and "sudo" not in alone
    monkeypatch.setenv("SUDO_USER", "alice")
    assert releaser() == f"alice (as {alone}, via sudo)"
