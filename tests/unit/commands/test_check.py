"""`dropd check`'s decisions (daemon/dryrun.py): settings, intake, batches, fates, words."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from daemon.commands.check import (
    DEFAULTS,
    Fate,
    UsageError,
    gather,
    make_plan,
    render,
    settings_for,
)
from daemon.config.model import Config, DoneMarkers, Group, Validation

USERS = b"user_id,login_id,first_name,last_name,email,status\nu1,a@b.edu,A,B,a@b.edu,active\n"
ENROLLMENTS = b"course_id,user_id,role,section_id,status\n"


def deletes(rows: int, deleted: int) -> bytes:
    lines = [f"C1,u{i},student,S1,{'deleted' if i < deleted else 'active'}\n" for i in range(rows)]
    return ENROLLMENTS + "".join(lines).encode()


def files(folder: Path, **named: bytes) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in named.items():
        (folder / name.replace("__", ".")).write_bytes(content)
    return gather([folder])


def config_of(tmp_path: Path, **extra: object) -> Config:
    music = Group("music", "test", tmp_path / "music", "music", "Music", **extra)  # type: ignore[arg-type]
    art = Group("art", "test", tmp_path / "art", "art", "Art")
    return Config(tmp_path / "dropd.toml", groups={"music": music, "art": art})


def test_dryrun_settings_from_group_folder_flag_or_defaults(tmp_path: Path) -> None:
    config = config_of(tmp_path, max_deleted_percent=80.0)
    music = config.groups["music"]
    assert settings_for(config, [tmp_path / "music" / "users.csv"], None)[0] is music
    assert settings_for(config, [tmp_path / "music"], None)[0] is music
    assert settings_for(config, [tmp_path / "music" / "failed" / "B"], None)[0] is music
    assert settings_for(config, [tmp_path / "musical"], None)[0] is DEFAULTS
    assert settings_for(None, [tmp_path / "music"], None)[0] is DEFAULTS
    assert settings_for(config, [tmp_path / "elsewhere"], "art")[0] is config.groups["art"]
    with pytest.raises(UsageError, match="groups art, music"):
        settings_for(config, [tmp_path / "music", tmp_path / "art"], None)
    with pytest.raises(UsageError, match="no group 'x'"):
        settings_for(config, [tmp_path], "x")


def test_dryrun_intake_rules_markers_and_batches(tmp_path: Path) -> None:
    files(
        tmp_path / "drop",
        users__csv=USERS,
        users__csv__done=b"",
        stray__done=b"",
        notes__txt=b"x",
        **{"~users.csv": USERS, ".hidden.csv": USERS, "users.csv.part": USERS},
    )
    os.symlink(tmp_path / "drop" / "users.csv", tmp_path / "drop" / "link.csv")
    os.mkfifo(tmp_path / "drop" / "pipe.csv")
    plan = make_plan(gather([tmp_path / "drop"]), DEFAULTS)
    said = {path.name: what for path, what in plan.files}
    assert said["users.csv"] == "batch 1: users, 1 rows, 0 deleted (0%)"
    assert said["users.csv.done"].startswith("marker of users.csv")
    assert said["stray.done"] == "a marker with no file beside it: dropd leaves it alone"
    assert said["notes.txt"].startswith('FAILS alone at step intake: "notes.txt" is not a file')
    for name in ("~users.csv", ".hidden.csv", "users.csv.part"):
        assert said[name].startswith("not taken: dotfiles and temporary names"), name
    for name in ("link.csv", "pipe.csv"):
        assert said[name] == "not taken: links, FIFOs and devices are never read", name
    assert [b.fate for b in plan.batches] == [Fate.SENT]
    assert plan.failing_files == 1 and plan.exit_code() == 1


def test_dryrun_required_markers_leave_unmarked_files_out(tmp_path: Path) -> None:
    required = dataclasses.replace(DEFAULTS, done_markers=DoneMarkers.REQUIRED)
    found = files(tmp_path, users__csv=USERS, courses__csv=b"x", courses__done=b"")
    plan = make_plan(found, required)
    said = {path.name: what for path, what in plan.files}
    assert said["users.csv"].startswith("not taken yet: it waits for its .done marker")
    assert [[p.name for p in b.paths] for b in plan.batches] == [["courses.csv"]]


def test_dryrun_a_repeated_name_starts_the_next_batch_and_a_zip_goes_alone(
    tmp_path: Path,
) -> None:
    first = files(tmp_path / "a", users__csv=USERS, enrollments__csv=deletes(3, 0))
    second = files(tmp_path / "b", users__csv=USERS, export__zip=b"PK\x05\x06" + bytes(18))
    plan = make_plan([*first, *second], DEFAULTS)
    assert [[p.name for p in b.paths] for b in plan.batches] == [
        ["enrollments.csv", "users.csv"],
        ["users.csv"],
        ["export.zip"],
    ]
    assert [b.fate for b in plan.batches] == [Fate.SENT, Fate.SENT, Fate.FAILED]
    assert "the ZIP holds no file" in plan.batches[2].notes[0]


def test_dryrun_guard_fates_and_validation_off(tmp_path: Path) -> None:
    at = make_plan(files(tmp_path / "at", e__csv=deletes(200, 100)), DEFAULTS)
    over = make_plan(files(tmp_path / "over", e__csv=deletes(200, 101)), DEFAULTS)
    assert (at.batches[0].fate, at.exit_code()) == (Fate.SENT, 0)
    assert (over.batches[0].fate, over.exit_code()) == (Fate.HELD, 1)
    assert over.batches[0].notes == [
        'guard: "e.csv" has 101 of its 200 rows deleted (50.5%), more than 50% '
        "(max_deleted_percent)"
    ]
    off = dataclasses.replace(DEFAULTS, validation=Validation.OFF)
    ragged = deletes(200, 150) + b"C1,u1\n"
    assert make_plan(files(tmp_path / "off", e__csv=ragged), off).batches[0].fate is Fate.HELD
    strict = make_plan(files(tmp_path / "strict", e__csv=ragged), DEFAULTS)
    assert strict.batches[0].fate is Fate.FAILED, "a problem fails the batch before the guard"
    unguarded = dataclasses.replace(DEFAULTS, max_deleted_percent=0.0)
    assert make_plan(files(tmp_path / "x", e__csv=deletes(200, 200)), unguarded).exit_code() == 0


def test_dryrun_render_says_the_settings_each_file_and_the_result(tmp_path: Path) -> None:
    group = dataclasses.replace(DEFAULTS, max_deleted_percent=0.0)
    plan = make_plan(files(tmp_path, users__csv=USERS), group)
    lines = render(plan, group, "the defaults")
    assert lines[0] == (
        "settings: the defaults: validation strict, done_markers auto, the guard off "
        "(max_deleted_percent 0)"
    )
    assert "users.csv  batch 1: users, 1 rows, 0 deleted (0%)" in lines
    assert "batch 1 (users.csv): would be sent" in lines
    assert lines[-1] == (
        "result: 1 batch(es) would be sent, 0 held, 0 failed, 0 file(s) failing alone: exit 0"
    )
