"""show and list: a batch made readable, the command to run next, the table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from daemon.commands.listing import render as render_list
from daemon.commands.show import render
from daemon.config.model import Group
from daemon.observe.batches import Batch, BatchFile, Place

BATCH = "20261123T085810.123456Z-3f9a"


def batch(place: Place, record: dict[str, Any], step: str | None = None) -> Batch:
    return Batch(
        BATCH,
        "music",
        place,
        Path("/srv/drop/music") / place.value / BATCH,
        (BatchFile("users.csv", 1234, "users"),),
        0,
        "2026-11-23T09:00:00.000Z",
        step,
        str(record.get("reason", "")),
        record.get("status"),
        "error.json",
        record,
    )


def test_a_failed_batch_shows_its_problems_the_servers_answer_and_what_to_run() -> None:
    record = {
        "step": "upload",
        "reason": "the server refused the upload",
        "status": 400,
        "url": "https://api.example.edu/rest/upload/music/zip",
        "answer": {
            "message": "Error parsing uploaded files",
            "fileErrors": [{"title": "users.csv", "description": "bad header"}],
        },
        "attempts": 1,
    }
    text = "\n".join(render(batch(Place.FAILED, record, "upload"), " --config /etc/x.toml"))
    assert "failed at step upload" in text
    assert "users.csv  1,234 bytes, users" in text
    assert "server:    HTTP 400 from https://api.example.edu/rest/upload/music/zip" in text
    assert "    users.csv: bad header" in text
    assert f"dropd retry --config /etc/x.toml music {BATCH}" in text


def test_a_batch_failed_at_validate_says_to_fix_the_files_in_failed() -> None:
    record = {"problems": [{"file": "users.csv", "line": 3, "message": "has 4 fields"}]}
    text = "\n".join(render(batch(Place.FAILED, record, "validate"), ""))
    assert "  users.csv line 3: has 4 fields" in text
    assert f"fix the files in /srv/drop/music/failed/{BATCH}/" in text
    assert f"dropd retry music {BATCH}" in text


def test_a_held_batch_shows_the_rows_and_the_release_command() -> None:
    record = {
        "guard": [{"file": "users.csv", "rows": 200, "deleted": 150, "share": 75.0, "limit": 50}],
        "reason": "users.csv has 150 of its 200 rows deleted",
    }
    text = "\n".join(render(batch(Place.HELD, record, "guard"), ""))
    assert "users.csv  1,234 bytes, users, 200 rows, 150 deleted" in text
    assert f"dropd release music {BATCH}" in text


def test_the_list_says_when_there_is_nothing_and_lines_up_a_table(tmp_path: Path) -> None:
    group = Group("music", "test", tmp_path, group_name="music", friendly_name="Music")
    assert render_list([], [group], Place.FAILED) == ["no failed batches in group music"]
    failed = batch(Place.FAILED, {"reason": "x " * 100}, "validate")
    header, row = render_list([failed], [group], None)
    assert header.split() == ["GROUP", "BATCH", "STATE", "FILES", "WHEN", "REASON"]
    assert row.split()[:5] == ["music", BATCH, "failed", "1", "2026-11-23T09:00:00.000Z"]
    assert row.endswith("…") and "validate: x x" in row
