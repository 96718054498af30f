"""batches: a group folder's batches read for `dropd list` and `dropd show`, wherever they are."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from daemon.base.errors import FolderError
from daemon.observe.batches import Place, find_batch, is_batch_id, list_batches

SENT = "20261120T080000.000000Z-aaaa"
FAILED = "20261121T080000.000000Z-bbbb"
HELD = "20261122T080000.000000Z-cccc"
WAITING = "20261123T080000.000000Z-dddd"


def filed(folder: Path, where: str, batch: str, record: dict[str, Any], name: str) -> Path:
    path = folder / where / batch
    path.mkdir(parents=True)
    (path / "users.csv").write_text("user_id,login_id,first_name,last_name,email,status\n")
    (path / name).write_text(json.dumps({"batch": batch, **record}))
    return path


def files(*names: str) -> list[dict[str, Any]]:
    return [{"name": n, "bytes": 10, "kind": "users"} for n in names]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    drop = tmp_path / "music"
    receipt = {"files": files("users.csv"), "status": 200, "finished": "2026-11-20T08:01:00.000Z"}
    filed(drop, "sent/2026-11-20", SENT, receipt, "receipt.json")
    error = {
        "files": files("users.csv"),
        "step": "validate",
        "reason": "users.csv: line 3 has 4 fields",
        "finished": "2026-11-21T08:01:00.000Z",
    }
    filed(drop, "failed", FAILED, error, "error.json")
    held = {"files": files("users.csv"), "step": "guard", "reason": "75% deleted"}
    filed(drop, "held", HELD, {**held, "held": "2026-11-22T08:01:00.000Z"}, "held.json")
    manifest = {"state": "uploading", "attempts": 2, "queued": "2026-11-23T08:00:30.000000Z"}
    filed(drop, ".dropd/work", WAITING, {**manifest, "files": files("a.csv")}, "manifest.json")
    return drop


def test_every_place_is_listed_newest_first_with_its_reason(folder: Path) -> None:
    got = list_batches(folder, "music")
    assert [(b.batch, b.place) for b in got] == [
        (WAITING, Place.WAITING),
        (HELD, Place.HELD),
        (FAILED, Place.FAILED),
        (SENT, Place.SENT),
    ]
    reasons = {b.place: b.reason for b in got}
    assert reasons[Place.SENT] == "sent, 200"
    assert reasons[Place.FAILED] == "users.csv: line 3 has 4 fields"
    assert reasons[Place.HELD] == "75% deleted"
    assert reasons[Place.WAITING] == "uploading (attempts so far: 2)"
    assert got[2].step == "validate" and got[2].when == "2026-11-21T08:01:00.000Z"


def test_newest_is_by_when_it_ended_not_when_it_began(folder: Path) -> None:
    late = {"files": files("x.csv"), "status": 200, "finished": "2026-12-01T00:00:00.000Z"}
    filed(folder, "sent/2026-12-01", "20261101T000000.000000Z-eeee", late, "receipt.json")
    assert list_batches(folder, "music")[0].batch == "20261101T000000.000000Z-eeee"


def test_a_record_beside_a_namesake_is_read_and_the_namesake_is_not(folder: Path) -> None:
    path = filed(
        folder, "failed", "20261124T000000.000000Z-ffff", {"step": "upload"}, "error.dropd.json"
    )
    (path / "error.json").write_text('{"step": "dropped by a person"}')
    got = find_batch(folder, "music", path.name)
    assert got is not None and got.step == "upload" and got.record_file == "error.dropd.json"


def test_a_batch_without_a_readable_record_is_still_listed_with_its_files(folder: Path) -> None:
    path = folder / "failed" / "20261125T000000.000000Z-0000"
    path.mkdir()
    (path / "users.csv").write_text("x")
    (path / "error.json").write_text("not json")
    got = find_batch(folder, "music", path.name)
    assert got is not None and got.record is None
    assert [f.name for f in got.files] == ["users.csv"]
    assert "has no readable error.json" in got.reason


def test_links_and_strangers_are_not_batches(folder: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    filed(elsewhere, "failed", "20261126T000000.000000Z-1111", {}, "error.json")
    os.symlink(elsewhere / "failed" / "20261126T000000.000000Z-1111", folder / "failed" / "x")
    (folder / "failed" / "notes").mkdir()
    assert len(list_batches(folder, "music")) == 4
    assert find_batch(folder, "music", "../music/failed/" + FAILED) is None


def test_show_finds_each_place_and_none_for_another_id(folder: Path) -> None:
    for batch in (SENT, FAILED, HELD, WAITING):
        found = find_batch(folder, "music", batch)
        assert found is not None and found.batch == batch
    assert find_batch(folder, "music", "20990101T000000.000000Z-beef") is None
    assert is_batch_id(SENT) and not is_batch_id("../etc")


def test_a_folder_that_is_not_there_is_an_error_an_empty_one_has_no_batches(
    tmp_path: Path,
) -> None:
    with pytest.raises(FolderError):
        list_batches(tmp_path / "gone", "music")
    (tmp_path / "empty").mkdir()
    assert list_batches(tmp_path / "empty", "music") == []
    assert not (tmp_path / "empty" / ".dropd").exists(), "listing creates nothing"


def test_a_secret_in_a_servers_answer_is_not_shown(folder: Path) -> None:
    answer = {"message": "bad", "echo": "Authorization: Bearer abc.def.ghi-secret-token"}
    filed(
        folder,
        "failed",
        "20261127T000000.000000Z-2222",
        {"step": "upload", "answer": answer},
        "error.json",
    )
    got = find_batch(folder, "music", "20261127T000000.000000Z-2222")
    assert got is not None and "abc.def.ghi-secret-token" not in json.dumps(got.record)
