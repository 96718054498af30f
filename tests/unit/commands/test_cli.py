"""cli: the table of commands, the config file each reads (--config, $DROPD_CONFIG, the
default), unknown groups, and help a person can use."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from daemon.commands import cli
from daemon.config.load import DEFAULT_CONFIG_PATH
from daemon.config.lookup import ConfigSource, choose_config

DOCS = Path(__file__).resolve().parents[3] / "docs"
CONFIG = """
[environments.test]
token_url = "http://127.0.0.1:9/oauth/token"
base_url = "http://127.0.0.1:9"
client_id = "c"
client_secret_env = "X"

[groups.music]
environment = "test"
folder = "{folder}"
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    (tmp_path / "music").mkdir()
    path = tmp_path / "dropd.toml"
    path.write_text(CONFIG.format(folder=tmp_path / "music"))
    return path


def test_the_config_is_the_option_else_the_variable_else_the_default() -> None:
    given, named = Path("/a.toml"), {"DROPD_CONFIG": "/b.toml"}
    assert choose_config(given, named).path == given
    assert choose_config(None, named).source is ConfigSource.VARIABLE
    assert choose_config(None, named).path == Path("/b.toml")
    assert choose_config(None, {"DROPD_CONFIG": ""}).path == DEFAULT_CONFIG_PATH
    assert choose_config(None, {}).source is ConfigSource.DEFAULT


@pytest.mark.parametrize("command", ["status", "check-config", "list", "verify", "run"])
def test_a_missing_config_says_which_file_and_how_it_was_chosen(
    command: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DROPD_CONFIG", str(tmp_path / "nope.toml"))
    assert cli.main([command]) == 2
    err = capsys.readouterr().err
    assert err == f"dropd: no config at {tmp_path / 'nope.toml'} (from $DROPD_CONFIG; " + (
        "fix it, or give --config)\n"
    )
    assert cli.main([command, "-c", str(tmp_path / "x.toml")]) == 2
    assert "(given with --config)" in capsys.readouterr().err


def test_the_default_file_is_named_when_nothing_chose_another(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if DEFAULT_CONFIG_PATH.exists():
        pytest.skip(f"{DEFAULT_CONFIG_PATH} exists on this machine")
    monkeypatch.delenv("DROPD_CONFIG", raising=False)
    assert cli.main(["status"]) == 2
    assert capsys.readouterr().err == (
        "dropd: no config at /etc/dropd/dropd.toml (the default; set --config or $DROPD_CONFIG)\n"
    )


def test_the_variable_is_read_by_every_command_that_reads_a_config(
    config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DROPD_CONFIG", str(config))
    assert cli.main(["check-config"]) == 0
    assert capsys.readouterr().out.startswith(f"{config}: ok")


def test_check_without_a_config_uses_the_defaults_but_not_when_one_was_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("daemon.config.lookup.DEFAULT_CONFIG_PATH", tmp_path / "none.toml")
    monkeypatch.delenv("DROPD_CONFIG", raising=False)
    (tmp_path / "users.csv").write_text("user_id,login_id,first_name,last_name,email,status\n")
    assert cli.main(["check", str(tmp_path / "users.csv")]) == 0
    assert "the defaults" in capsys.readouterr().out
    monkeypatch.setenv("DROPD_CONFIG", str(tmp_path / "none.toml"))
    assert cli.main(["check", str(tmp_path / "users.csv")]) == 2
    assert "no config at" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args",
    [
        ["verify", "nosuch"],
        ["retry", "nosuch", "20261123T085810.123456Z-3f9a"],
        ["release", "nosuch", "20261123T085810.123456Z-3f9a"],
        ["list", "nosuch"],
        ["show", "nosuch", "20261123T085810.123456Z-3f9a"],
        ["check", "--group", "nosuch", "."],
    ],
)
def test_an_unknown_group_exits_2_in_every_command(
    args: list[str], config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main([args[0], "-c", str(config), *args[1:]]) == 2
    err = capsys.readouterr().err
    assert "no group" in err and "nosuch" in err and "music" in err


def test_dropd_help_opens_with_what_dropd_is_and_lists_every_command(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    first = out.split("\n\n")[1]
    assert first.startswith("dropd takes the CSV files") and "command line" not in first
    for command in cli.COMMANDS:
        assert f"    {command.name}" in out
    assert "$DROPD_CONFIG" in out


@pytest.mark.parametrize("command", [c.name for c in cli.COMMANDS])
def test_each_commands_help_says_what_it_does_its_exit_codes_and_an_example(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    out = capsys.readouterr().out
    entry = next(c for c in cli.COMMANDS if c.name == command)
    assert entry.description.splitlines()[0] in out
    assert "exit codes:\n  0  " in out
    assert re.search(r"^examples?:\n  dropd " + re.escape(command), out, re.MULTILINE)


def _documented_codes() -> dict[str, set[int]]:
    """Per command, the exit codes docs/reference/exit-codes.md gives a meaning."""
    codes: dict[str, set[int]] = {}
    for line in (DOCS / "reference" / "exit-codes.md").read_text().splitlines():
        found = re.match(r"\| `dropd ([a-z-]+)` \|(.*)\|$", line)
        if found:
            cells = [cell.strip() for cell in found[2].split("|")]
            codes[found[1]] = {code for code, cell in enumerate(cells) if cell}
    return codes


def test_the_exit_codes_in_help_are_those_of_the_reference() -> None:
    documented = _documented_codes()
    assert set(documented) == {c.name for c in cli.COMMANDS}
    for command in cli.COMMANDS:
        assert {code for code, _ in command.exits} == documented[command.name], command.name
