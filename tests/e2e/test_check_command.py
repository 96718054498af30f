"""`dropd check` as a real process: what would happen to each file and batch, the exit codes,
and proof that it moves, writes and sends nothing."""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest
from guardfiles import SECTIONS, enrollments_csv, users_csv
from harness import COURSES, USERS, run_dropd, toml_config, write_secret

Tree = dict[str, tuple[int, int, int, str]]


def snapshot(root: Path) -> Tree:
    """Every entry under `root`: mode, size, mtime and, for a file, its SHA-256."""
    found: Tree = {}
    for folder, folders, files in os.walk(root):
        for name in [*folders, *files]:
            path = Path(folder) / name
            info = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
            found[str(path.relative_to(root))] = (
                info.st_mode,
                info.st_size,
                info.st_mtime_ns,
                digest,
            )
    return found


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A config with groups `music` (the defaults) and `lenient` (80%); their folders."""
    secret = write_secret(tmp_path / "test.secret", "secret")
    environment = {
        "token_url": "http://127.0.0.1:9/oauth/token",
        "base_url": "http://127.0.0.1:9",
        "client_id": "unit-a",
        "client_secret_file": str(secret),
    }
    music, lenient = tmp_path / "drop" / "music", tmp_path / "drop" / "lenient"
    music.mkdir(parents=True)
    lenient.mkdir(parents=True)
    groups: dict[str, dict[str, Any]] = {
        "music": {"environment": "test", "folder": str(music)},
        "lenient": {"environment": "test", "folder": str(lenient), "max_deleted_percent": 80},
    }
    return toml_config(tmp_path, {"test": environment}, groups), music, lenient


def check(config: Path | None, *args: str) -> tuple[int, str, str]:
    options = ["--config", str(config)] if config is not None else []
    done = run_dropd("check", *options, *args)
    return done.returncode, done.stdout, done.stderr


def test_check_good_bad_and_guarded_input_moves_nothing(
    tmp_path: Path, setup: tuple[Path, Path, Path]
) -> None:
    config, music, lenient = setup
    (music / "users.csv").write_bytes(USERS)
    (music / "users.csv.done").write_bytes(b"")
    (music / "courses.csv").write_bytes(COURSES)
    (music / "sections.csv").write_bytes(SECTIONS)
    (music / ".users.csv.part").write_bytes(b"half")
    before = snapshot(tmp_path)

    code, out, err = check(config, str(music))
    assert (code, err) == (0, ""), out
    assert out.splitlines()[0].startswith("settings: group music, whose folder holds them")
    assert "batch 1 (courses.csv, sections.csv, users.csv): would be sent" in out
    assert "users.csv.done   marker of users.csv" in out
    assert ".users.csv.part  not taken" in out
    assert out.splitlines()[-1].endswith(": exit 0")
    assert snapshot(tmp_path) == before

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "users.csv").write_bytes(b"user,login\nu1,a@example.edu\n")
    (bad / "enrollments.csv").write_bytes(
        enrollments_csv(3, 0) + b"C1,u9,student\nC1,u8,mentor,S1,active\n"
    )
    (bad / "notes.txt").write_bytes(b"not for upload")
    before = snapshot(tmp_path)
    code, out, _ = check(config, str(bad))
    assert code == 1, out
    assert "settings: the defaults (no group's folder holds the paths)" in out
    assert "would FAIL" in out
    assert "problem: users.csv: line 1: the header" in out
    assert "problem: enrollments.csv: line 5 has 3 fields, the header has 5" in out
    assert 'warning: enrollments.csv: line 6: role "mentor"' in out
    assert "notes.txt        FAILS alone at step intake" in out
    assert "0 batch(es) would be sent, 0 held, 1 failed, 1 file(s) failing alone: exit 1" in out
    assert snapshot(tmp_path) == before

    (music / "enrollments.csv").write_bytes(enrollments_csv(200, 150))
    (lenient / "enrollments.csv").write_bytes(enrollments_csv(200, 150))
    before = snapshot(tmp_path)
    code, out, _ = check(config, str(music / "enrollments.csv"))
    assert code == 1, out
    assert "would be HELD by the guard" in out
    assert "enrollments.csv  batch 1: enrollments, 200 rows, 150 deleted (75%)" in out
    assert 'guard: "enrollments.csv" has 150 of its 200 rows deleted (75%), more than 50%' in out
    # The group whose folder holds the file decides, else --group, else the defaults.
    assert check(config, str(lenient / "enrollments.csv"))[0] == 0
    assert check(config, "--group", "lenient", str(music / "enrollments.csv"))[0] == 0
    assert check(None, str(lenient / "enrollments.csv"))[0] == 1
    assert snapshot(tmp_path) == before, "dropd check moved, wrote or touched something"
    assert not (music / ".dropd").exists()


def test_check_the_guards_edges_and_a_zip(tmp_path: Path, setup: tuple[Path, Path, Path]) -> None:
    config, music, _ = setup
    cases = {
        "at.csv": (users_csv(200, 100), 0),  # exactly at the limit: not held
        "over.csv": (users_csv(200, 101), 1),
        "few.csv": (users_csv(99, 99), 0),  # under min_rows_for_guard
    }
    for name, (content, _) in cases.items():
        (tmp_path / name).write_bytes(content)
    for name, (_, want) in cases.items():
        code, out, _ = check(config, str(tmp_path / name))
        assert code == want, (name, out)
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w") as archive:
        archive.writestr("enrollments.csv", enrollments_csv(300, 200))
    (music / "export.zip").write_bytes(packed.getvalue())
    code, out, _ = check(config, str(music / "export.zip"))
    assert code == 1 and 'guard: "enrollments.csv" has 200 of its 300 rows deleted' in out


def test_check_splits_batches_where_a_name_repeats(
    tmp_path: Path, setup: tuple[Path, Path, Path]
) -> None:
    config, _, _ = setup
    first, second = tmp_path / "monday", tmp_path / "tuesday"
    for folder in (first, second):
        folder.mkdir()
        (folder / "users.csv").write_bytes(USERS)
    code, out, _ = check(config, str(first), str(second))
    assert code == 0, out
    assert f"{first / 'users.csv'}   batch 1" in out
    assert f"{second / 'users.csv'}  batch 2" in out


def test_check_usage_errors_exit_2(tmp_path: Path, setup: tuple[Path, Path, Path]) -> None:
    config, music, lenient = setup
    (music / "users.csv").write_bytes(USERS)
    (lenient / "users.csv").write_bytes(USERS)
    code, _, err = check(config, "--group", "nosuch", str(music))
    assert code == 2 and "there is no group 'nosuch' (groups: lenient, music)" in err
    code, _, err = check(config, str(tmp_path / "missing.csv"))
    assert code == 2 and "missing.csv cannot be looked at" in err
    code, _, err = check(config, str(music), str(lenient))
    assert code == 2 and "folders of groups lenient, music" in err
    code, _, err = check(tmp_path / "nope.toml", str(music))
    assert code == 2 and f"no config at {tmp_path / 'nope.toml'} (given with --config)" in err
    assert run_dropd("check", "--config", str(config)).returncode == 2, "no PATH"


def test_check_exits_1_when_nothing_would_be_sent(
    tmp_path: Path, setup: tuple[Path, Path, Path]
) -> None:
    config, music, _ = setup
    code, out, _ = check(config, str(music))
    assert code == 1, out
    assert "nothing would be sent: there is no file to look at" in out
    assert out.splitlines()[-1].endswith(": exit 1")


def test_check_says_how_max_upload_bytes_cuts_a_batch(tmp_path: Path) -> None:
    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / "users.csv").write_bytes(USERS)
    (folder / "courses.csv").write_bytes(COURSES)
    groups = {"music": {"environment": "test", "folder": str(folder), "max_upload_bytes": 400}}
    environment = {
        "token_url": "http://127.0.0.1:9/oauth/token",
        "base_url": "http://127.0.0.1:9",
        "client_id": "unit-a",
        "client_secret_file": str(write_secret(tmp_path / "test.secret", "secret")),
    }
    config = toml_config(tmp_path, {"test": environment}, groups)
    before = snapshot(tmp_path)
    code, out, _ = check(config, str(folder))
    assert code == 0, out
    assert "over max_upload_bytes (400): it goes up in 2 parts, in the server's order " in out
    assert "(1: users.csv; 2: courses.csv)" in out
    assert snapshot(tmp_path) == before, "measuring the ZIP writes nothing"
