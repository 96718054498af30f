"""`dropd status`'s report (daemon/commands/status.py), from status files written by hand."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from daemon.commands.status import (
    STALE_SECONDS,
    UNKNOWN,
    ago,
    build_report,
    read_status_file,
    render_text,
    report_json,
    status_command,
)
from daemon.config.model import Config, DaemonSettings, Group
from daemon.observe import liveness
from daemon.observe.status import STATUS_FILE

NOW = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)


def config_of(tmp_path: Path, *keys: str) -> Config:
    groups = {key: Group(key, "test", tmp_path / key, key, key.title() + " School") for key in keys}
    return Config(tmp_path / "dropd.toml", DaemonSettings(state_dir=tmp_path), groups=groups)


def entry(key: str, status: str = "Valid", **fields: Any) -> dict[str, Any]:
    return {
        "group": key,
        "friendly_name": key,
        "status": status,
        "step": "",
        "reason": "",
        "role": "owner",
        "last_upload": None,
        "files_waiting": 0,
        "batches_failed": 0,
        **fields,
    }


def write_status(
    tmp_path: Path, groups: list[dict[str, Any]], pid: int | None = None, ticks: Any = "own"
) -> None:
    pid = os.getpid() if pid is None else pid
    data = {
        "updated": "2026-11-23T09:59:57.000Z",
        "pid": pid,
        "pid_start_ticks": liveness.start_ticks(pid) if ticks == "own" else ticks,
        "started": "2026-11-23T08:00:00.000Z",
        "groups": groups,
    }
    (tmp_path / STATUS_FILE).write_text(json.dumps(data))


def test_status_report_running_and_valid_exits_0(tmp_path: Path) -> None:
    write_status(tmp_path, [entry("music", last_upload="2026-11-23T09:00:00.000Z")])
    report = build_report(config_of(tmp_path, "music"), NOW)
    assert report.running and report.pid == os.getpid()
    assert report.age_seconds == 3.0
    assert report.exit_code() == 0
    [group] = report.groups
    assert group.friendly_name == "Music School", "the config's name, not the file's"
    text = render_text(report, NOW)
    assert text.splitlines()[0] == (
        f"dropd running (pid {os.getpid()}), status as of 2026-11-23T09:59:57.000Z (3 s ago)"
    )
    assert "music (Music School)" in text
    assert "last upload:    2026-11-23T09:00:00.000Z (1 h ago)" in text


def test_status_report_a_group_in_error_exits_1(tmp_path: Path) -> None:
    error = entry("music", "Error", step="token", reason="the token endpoint rejected client")
    write_status(tmp_path, [error, entry("art", "Processing")])
    report = build_report(config_of(tmp_path, "music", "art"), NOW)
    assert report.exit_code() == 1
    text = render_text(report, NOW)
    assert "step:           token" in text and "rejected client" in text
    assert report_json(report)["groups"][1]["status"] == "Processing"


def test_status_report_daemon_gone_says_how_old_and_exits_1(tmp_path: Path) -> None:
    write_status(tmp_path, [entry("music")], pid=os.getpid(), ticks=1)  # a reused pid
    report = build_report(config_of(tmp_path, "music"), NOW + timedelta(hours=2))
    assert not report.running and report.exit_code() == 1
    assert render_text(report, NOW).startswith(
        f"dropd is not running (pid {os.getpid()} is gone); last known status from "
        "2026-11-23T09:59:57.000Z (2 h ago)"
    )
    data = report_json(report)
    assert data["running"] is False and data["age_seconds"] == 7203.0


def test_status_report_without_a_status_file_says_dropd_never_ran(tmp_path: Path) -> None:
    report = build_report(config_of(tmp_path, "music"), NOW)
    assert report.exit_code() == 1
    assert "does not exist, so dropd has not run" in report.problem
    assert [g.status for g in report.groups] == [UNKNOWN]
    assert report_json(report)["updated"] is None


def test_status_report_a_group_the_daemon_has_not_loaded_is_unknown(tmp_path: Path) -> None:
    write_status(tmp_path, [entry("music"), entry("band")])
    report = build_report(config_of(tmp_path, "music", "art"), NOW)
    assert [g.status for g in report.groups] == ["Valid", UNKNOWN]
    assert "has not loaded this group; reload it" in report.groups[1].reason
    assert report.notes and "band" in report.notes[0]
    assert report.exit_code() == 1


def test_status_report_a_status_file_not_refreshed_means_a_stuck_loop(tmp_path: Path) -> None:
    write_status(tmp_path, [entry("music")])
    report = build_report(config_of(tmp_path, "music"), NOW + timedelta(seconds=STALE_SECONDS))
    assert report.running and report.exit_code() == 1
    assert "its loop may be stuck" in render_text(report, NOW)


def test_status_report_a_broken_status_file_is_said(tmp_path: Path) -> None:
    (tmp_path / STATUS_FILE).write_text('{"half": ')
    report = build_report(config_of(tmp_path, "music"), NOW)
    assert "is not a dropd status file" in report.problem and report.exit_code() == 1
    with pytest.raises(ValueError):
        read_status_file(tmp_path / STATUS_FILE)


@pytest.mark.parametrize(
    ("seconds", "said"),
    [(0, "0 s ago"), (59.9, "59 s ago"), (60, "1 min ago"), (7200, "2 h ago"), (-5, "0 s ago")],
)
def test_ago_says_the_largest_whole_unit(seconds: float, said: str) -> None:
    assert ago(seconds) == said


def test_status_report_json_lists_each_group_as_the_status_file_has_it(tmp_path: Path) -> None:
    written = entry("music", "Error", step="upload", reason="HTTP 400", batches_held=1)
    written.update(batch="20261123T085810.123456Z-3f9a", last_failed="20261123T085810.123456Z-3f9a")
    write_status(tmp_path, [written])
    report = build_report(config_of(tmp_path, "music", "art"), NOW)
    [music, art] = report_json(report)["groups"]
    assert music == {**written, "friendly_name": "Music School"}
    assert list(music) == list(written)
    assert (art["status"], art["role"], art["batches_held"]) == (UNKNOWN, None, None)


def test_status_report_a_group_entry_of_an_older_dropd_has_no_held_batches(
    tmp_path: Path,
) -> None:
    write_status(tmp_path, [entry("music", files_waiting="many")])  # no batches_held
    [music] = build_report(config_of(tmp_path, "music"), NOW).groups
    assert (music.batches_held, music.files_waiting) == (0, None)
    assert "held batches:   0" in render_text(build_report(config_of(tmp_path, "music"), NOW), NOW)


FAILED = "20261123T085810.123456Z-3f9a"


def test_status_report_names_the_failed_batch_and_the_held_one(tmp_path: Path) -> None:
    failed = entry("music", "Error", step="validate", reason="bad header", batches_failed=2)
    failed.update(batch=FAILED, last_failed=FAILED)
    held = entry("art", "Error", step="guard", reason="held", batch="20261124T000000.000000Z-1")
    write_status(tmp_path, [failed, held])
    text = render_text(build_report(config_of(tmp_path, "music", "art"), NOW), NOW)
    assert f"batch:          {FAILED} (in failed/)" in text
    assert f"failed batches: 2 (newest {FAILED})" in text
    assert "batch:          20261124T000000.000000Z-1 (in held/)" in text


def test_status_with_a_broken_config_shows_the_running_dropd_and_the_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    write_status(state, [entry("music", "Error", step="upload", reason="HTTP 400", batch=FAILED)])
    config = tmp_path / "dropd.toml"
    config.write_text('[daemon]\nstate_dir = "state"\nsettle_seconds = "ten"\n')
    assert status_command(config, as_json=False) == 2
    out, err = capsys.readouterr()
    assert f"dropd running (pid {os.getpid()})" in out
    assert "music" in out and "HTTP 400" in out and FAILED in out
    assert "the config has problems" in err and 'daemon.settle_seconds: "ten"' in err
    assert status_command(config, as_json=True) == 2
    data = json.loads(capsys.readouterr().out)
    assert data["running"] is True and data["exit_code"] == 2
    assert [g["group"] for g in data["groups"]] == ["music"]
    assert data["config_problems"][0].startswith("daemon.settle_seconds:")


def test_status_with_a_config_that_is_no_toml_looks_in_the_default_state_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "dropd.toml"
    config.write_text("[daemon\n")
    assert status_command(config, as_json=True) == 2
    data = json.loads(capsys.readouterr().out)
    assert data["status_file"] == str(DaemonSettings().state_dir / STATUS_FILE)
