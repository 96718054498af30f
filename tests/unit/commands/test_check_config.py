"""`dropd check-config`: the function and the real command, exit codes and what each prints."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.commands.check_config import check_config_command
from unit.config.tomls import group, state_dir, write

SECONDS_HINT = "give seconds as a number such as 10 or 0.5"
KEEP_STATE = "keep dropd's state outside the drop folders (e.g. /var/lib/dropd)"


def test_check_config_command_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "drop").mkdir()
    path = write(tmp_path, group('folder = "drop"'))
    assert check_config_command(path) == 0
    out, err = capsys.readouterr()
    assert out == f"{path}: ok (1 environment, 1 group)\n"
    assert err == ""


def test_check_config_command_counts_in_plural(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "")
    assert check_config_command(path) == 0
    assert capsys.readouterr().out == f"{path}: ok (0 environments, 0 groups)\n"


def test_check_config_command_prints_every_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, '[daemon]\nsettle_seconds = "ten"\nquiet_seconds = 0\ncolour = 1\n')
    assert check_config_command(path) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 3
    assert lines[:2] == [
        f'daemon.settle_seconds: "ten" is not a number; {SECONDS_HINT}',
        "daemon.quiet_seconds: 0 is too small; give a number above 0",
    ]
    assert lines[2].startswith("daemon.colour: unknown key; remove it (known keys: state_dir")


def test_check_config_command_reports_path_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, group('folder = "drop"'))
    assert check_config_command(path) == 2
    assert capsys.readouterr().err == (
        f"groups.music.folder: {tmp_path / 'drop'} does not exist; create it or fix the path\n"
    )


def dropd() -> str:
    beside = Path(sys.executable).parent / "dropd"
    found = str(beside) if beside.exists() else shutil.which("dropd")
    assert found is not None, "the dropd console script is not installed"
    return found


def run_check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [dropd(), "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_dropd_check_config_exits_2_with_problems_on_stderr(tmp_path: Path) -> None:
    path = write(tmp_path, group('environment = "prod"\nfolder = "drop"\nmax_upload_bytes = -1'))
    result = run_check_config(path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        'groups.music.environment: "prod" is not defined under [environments]; '
        "add [environments.prod] or use one of: test",
        "groups.music.max_upload_bytes: -1 is too small; give a whole number of 0 or more",
        # In the same run: the folder need not wait for the other problems to be fixed.
        f"groups.music.folder: {tmp_path / 'drop'} does not exist; create it or fix the path",
    ]


def test_dropd_check_config_refuses_a_state_dir_that_is_a_groups_folder(tmp_path: Path) -> None:
    (tmp_path / "drop").mkdir()
    path = write(tmp_path, state_dir("drop") + group('folder = "drop"'))
    result = run_check_config(path)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"daemon.state_dir: {tmp_path / 'drop'} is also groups.music's folder; {KEEP_STATE}\n"
    )


def test_dropd_check_config_exits_0_on_a_good_config(tmp_path: Path) -> None:
    (tmp_path / "drop").mkdir()
    path = write(tmp_path, group('folder = "drop"'))
    result = run_check_config(path)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"{path}: ok (1 environment, 1 group)\n"


def test_check_config_without_environments_says_to_add_one_and_checks_folders_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, '[groups.music]\nfolder = "drop"\n')
    assert check_config_command(path) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith(
        "groups.music.environment: missing, and the file has no environment to name: add an "
        "[environments.NAME] table (token_url, base_url, client_id and a client secret"
    )
    assert 'add environment = "test"' not in lines[0]
    assert lines[1:] == [
        f"groups.music.folder: {tmp_path / 'drop'} does not exist; create it or fix the path"
    ]


def test_check_config_says_a_missing_folder_with_the_other_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "[daemon]\nquiet_seconds = 0\n" + group('folder = "drop"'))
    assert check_config_command(path) == 2
    assert capsys.readouterr().err.splitlines() == [
        "daemon.quiet_seconds: 0 is too small; give a number above 0",
        f"groups.music.folder: {tmp_path / 'drop'} does not exist; create it or fix the path",
    ]
