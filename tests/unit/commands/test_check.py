"""`dropd check`'s decisions (daemon/dryrun.py): settings, intake, batches, fates, words."""

from __future__ import annotations

import dataclasses
import io
import os
import secrets
import zipfile
from pathlib import Path

import pytest

from daemon.archive.writer import build_zip
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
from daemon.delivery.packing import zip_entries

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
        "(max_deleted_percent 0), no max_upload_bytes"
    )
    assert "users.csv  batch 1: users, 1 rows, 0 deleted (0%)" in lines
    assert "batch 1 (users.csv): would be sent" in lines
    assert lines[-1] == (
        "result: 1 batch(es) would be sent, 0 held, 0 failed, 0 file(s) failing alone: exit 0"
    )


# max_upload_bytes: would the batch go up whole, in parts, or not at all?


def random_rows(header: bytes, count: int) -> bytes:
    """A CSV of random hex fields: it compresses about 2:1, so its ZIP's size is known."""
    fields = header.count(b",") + 1
    lines = (b",".join(secrets.token_hex(4).encode() for _ in range(fields)) for _ in range(count))
    return header + b"\n".join(lines) + b"\n"


USERS_HEADER = b"user_id,login_id,first_name,last_name,email,status\n"
COURSES_HEADER = b"course_id,short_name,long_name,account_id,term_id,status\n"


def limited(limit: int) -> Group:
    return dataclasses.replace(DEFAULTS, max_upload_bytes=limit, max_deleted_percent=0.0)


def test_check_a_batch_within_max_upload_bytes_goes_up_as_one_zip(tmp_path: Path) -> None:
    found = files(tmp_path, users__csv=USERS)
    whole = build_zip(zip_entries(tmp_path, ["users.csv"]), tmp_path.parent / "whole.zip").bytes
    plan = make_plan(found, limited(whole))
    [batch] = plan.batches
    assert batch.fate is Fate.SENT and plan.exit_code() == 0
    assert batch.notes == [
        f"upload: one ZIP of {whole:,} bytes, within max_upload_bytes ({whole:,})"
    ]
    assert render(plan, limited(whole), "here")[0].endswith(f", max_upload_bytes {whole:,}")


def test_check_a_batch_over_max_upload_bytes_says_its_parts_in_the_servers_order(
    tmp_path: Path,
) -> None:
    found = files(
        tmp_path / "drop",
        b_courses__csv=random_rows(COURSES_HEADER, 60),
        a_enrollments__csv=ENROLLMENTS + b"c1,u1,student,s1,active\n",
        c_users__csv=random_rows(USERS_HEADER, 60),
        message__properties=b"sender=a@example.edu\nsubject=Hi\nbody=Welcome\n",
    )
    order = ["c_users.csv", "message.properties", "b_courses.csv", "a_enrollments.csv"]
    whole = build_zip(zip_entries(tmp_path / "drop", order), tmp_path / "whole.zip").bytes
    limit = whole * 2 // 3  # the users file and its properties fit, not all four files

    plan = make_plan(found, limited(limit))

    [batch] = plan.batches
    assert batch.fate is Fate.SENT and plan.exit_code() == 0
    [note] = [n for n in batch.notes if not n.startswith("warning:")]  # random rows warn
    assert note.startswith(
        f"upload: its ZIP would be {whole:,} bytes, over max_upload_bytes ({limit:,}): it "
        "goes up in 2 parts, in the server's order (1: c_users.csv, message.properties"
    ), note
    assert note.endswith("; 2: b_courses.csv, a_enrollments.csv)"), note


def test_check_a_file_too_big_for_max_upload_bytes_fails_the_batch(tmp_path: Path) -> None:
    found = files(tmp_path, users__csv=random_rows(USERS_HEADER, 200), e__csv=ENROLLMENTS)
    plan = make_plan(found, limited(2000))
    [batch] = plan.batches
    assert batch.fate is Fate.FAILED and plan.exit_code() == 1
    [note] = [n for n in batch.notes if not n.startswith("warning:")]  # random rows warn
    assert note.startswith('problem: "users.csv" needs ')
    assert "more than max_upload_bytes (2,000) allows for one upload" in note


def test_check_measures_nothing_without_max_upload_bytes_or_for_a_failing_batch(
    tmp_path: Path,
) -> None:
    plain = make_plan(files(tmp_path / "a", users__csv=USERS), DEFAULTS)
    assert not any(n.startswith("upload:") for n in plain.batches[0].notes)
    failing = make_plan(files(tmp_path / "b", users__csv=b"nope\n"), limited(10))
    assert failing.batches[0].fate is Fate.FAILED
    assert not any("max_upload_bytes" in n for n in failing.batches[0].notes)


# Nothing at all would be sent: exit 1, saying why


def test_check_an_empty_folder_exits_1_saying_nothing_would_be_sent(tmp_path: Path) -> None:
    plan = make_plan(files(tmp_path / "empty"), DEFAULTS)
    assert plan.exit_code() == 1
    lines = render(plan, DEFAULTS, "the defaults")
    assert "nothing would be sent: there is no file to look at" in lines
    assert lines[-1].endswith(": exit 1")


def test_check_files_waiting_for_markers_exit_1_saying_so(tmp_path: Path) -> None:
    required = dataclasses.replace(DEFAULTS, done_markers=DoneMarkers.REQUIRED)
    plan = make_plan(files(tmp_path, users__csv=USERS, courses__csv=USERS), required)
    assert plan.batches == [] and plan.exit_code() == 1
    assert plan.nothing_sent() == (
        "nothing would be sent: 2 file(s) wait for their .done marker (done_markers = "
        '"required"); drop the markers, or check with them'
    )


def test_check_only_files_dropd_never_takes_exit_1(tmp_path: Path) -> None:
    plan = make_plan(files(tmp_path, **{".hidden.csv": USERS, "x.tmp": b""}), DEFAULTS)
    assert plan.exit_code() == 1
    assert plan.nothing_sent() == "nothing would be sent: no file given is one dropd uploads"
    some = make_plan(files(tmp_path / "some", users__csv=USERS), DEFAULTS)
    assert some.nothing_sent() == "" and some.exit_code() == 0


def zip_of(entries: dict[str, bytes]) -> bytes:
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return packed.getvalue()


def test_check_a_dropped_zip_unpacks_it_and_checks_its_files(tmp_path: Path) -> None:
    macos = zip_of(
        {
            "export/users.csv": USERS,
            "export/enrollments.csv": deletes(3, 1),
            "__MACOSX/export/._users.csv": b"\0\5\26\7",
            "export/.DS_Store": b"\0\0\0\1Bud1",
        }
    )
    plan = make_plan(files(tmp_path / "drop", export__zip=macos), DEFAULTS)
    [batch] = plan.batches
    assert batch.fate is Fate.SENT and plan.exit_code() == 0
    [(_, said)] = plan.files
    assert said == (
        "batch 1: a ZIP of users.csv: users, 1 rows, 0 deleted (0%); "
        "enrollments.csv: enrollments, 3 rows, 1 deleted (33.33%)"
    )
    assert batch.notes == [
        'left out: "__MACOSX/export/._users.csv", "export/.DS_Store" (macOS\'s own files, '
        "never uploaded)",
        'unpacked by base name, as the server does: "export/users.csv" as users.csv, '
        '"export/enrollments.csv" as enrollments.csv',
    ]
    assert sorted(p.name for p in (tmp_path / "drop").iterdir()) == ["export.zip"]


def test_check_a_dropped_zip_with_a_wrong_header_fails_as_a_loose_file(tmp_path: Path) -> None:
    wrong = USERS.replace(b"login_id", b"login")
    plan = make_plan(files(tmp_path / "drop", export__zip=zip_of({"users.csv": wrong})), DEFAULTS)
    loose = make_plan(files(tmp_path / "loose", users__csv=wrong), DEFAULTS)
    [batch], [alone] = plan.batches, loose.batches
    assert batch.fate is Fate.FAILED and plan.exit_code() == 1
    assert batch.notes == alone.notes and batch.notes[0].startswith("problem: users.csv: ")


def test_check_a_dropped_zip_of_two_entries_of_one_base_name_fails(tmp_path: Path) -> None:
    twice = zip_of({"a/users.csv": USERS, "b/users.csv": USERS})
    plan = make_plan(files(tmp_path / "drop", export__zip=twice), DEFAULTS)
    [batch] = plan.batches
    assert batch.fate is Fate.FAILED
    [note] = batch.notes
    assert note.startswith("problem (step intake): export.zip: the ZIP holds two or more")
    assert '"a/users.csv", "b/users.csv"' in note


def test_check_a_dropped_zip_held_by_the_guard(tmp_path: Path) -> None:
    plan = make_plan(files(tmp_path, e__zip=zip_of({"e.csv": deletes(200, 101)})), DEFAULTS)
    [batch] = plan.batches
    assert batch.fate is Fate.HELD
    assert batch.notes[-1].startswith('guard: "e.csv" has 101 of its 200 rows deleted')


def test_check_measures_the_utf8_copy_of_a_file_in_another_encoding(tmp_path: Path) -> None:
    names = "".join(f"u{i},u{i}@b.edu,Ren\xe9e,Fran\xe7ois,u{i}@b.edu,active\n" for i in range(50))
    found = files(tmp_path / "drop", users__csv=USERS_HEADER + names.encode("cp1252"))
    copy = zip_entries(tmp_path / "drop", ["users.csv"], "cp1252")
    whole = build_zip(copy, tmp_path / "whole.zip").bytes
    group = dataclasses.replace(limited(whole), encoding="cp1252")
    [batch] = make_plan(found, group).batches
    assert f"upload: one ZIP of {whole:,} bytes, within max_upload_bytes ({whole:,})" in batch.notes
