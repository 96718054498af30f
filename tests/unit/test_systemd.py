"""Tests of the files a sysadmin installs to run dropd under systemd (systemd/, config/).

They check the files with systemd's own tools, run on a file-system root in tmp_path (the
host's units, users and folders are never read or changed), and skip only where systemd's
tools are not installed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from daemon.commands.check_config import check_config_command
from daemon.commands.cli import build_parser
from daemon.config.load import check_paths, load_config
from daemon.config.lookup import choose_config
from daemon.config.model import SecretKind
from daemon.runtime.scheduler import LOOP_CEILING_SECONDS, STOP_GRACE_SECONDS

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "dropd.service"
FOLDERS = REPO / "systemd" / "dropd-folders.conf"
SYSUSERS = REPO / "systemd" / "dropd.sysusers"
TMPFILES = REPO / "systemd" / "dropd.tmpfiles"
CONFIG = REPO / "config" / "dropd.systemd.toml"

# docs/operator/hardening.md gives the 1.1 of systemd 252; this keeps it from creeping up.
EXPOSURE_LIMIT = 2.0
# Every service is ordered against these unless DefaultDependencies=no; verify loads them.
DEFAULT_TARGETS = frozenset({"sysinit.target", "basic.target", "shutdown.target"})
# A commented-out example in our files: `#Key=value` or `#[Section]` in a unit, `#m ...` or
# `#d ...` in sysusers and tmpfiles. Prose comments always have a space after the `#`.
EXAMPLE_SETTING = re.compile(r"^#(?=\[[A-Z]|[A-Z][A-Za-z]*=|[a-z] )", re.MULTILINE)
TIMESPAN = re.compile(r"(\d+)(s|min)")


def tool(name: str) -> str:
    """The path of one of systemd's tools; skips the test where it is not installed."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed: the systemd files can only be checked with it")
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


def directives(text: str) -> dict[str, list[str]]:
    """Every `Key=value` of a unit file or drop-in, comments left out, values in order."""
    found: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


def with_examples(text: str) -> str:
    """`text` with its commented-out example settings turned on."""
    return EXAMPLE_SETTING.sub("", text)


def seconds(span: str) -> float:
    """A systemd time span such as `45s` or `5min`, in seconds (the forms our unit uses)."""
    match = TIMESPAN.fullmatch(span)
    assert match, f"unexpected time span {span!r}"
    return int(match.group(1)) * (60 if match.group(2) == "min" else 1)


# -- the unit, through systemd-analyze -----------------------------------------------------


def unit_root(tmp_path: Path, unit: str, drop_in: str | None = None) -> Path:
    """A file-system root with the unit installed, stand-ins for the programs it runs and
    stub targets it is ordered against: `--root` makes systemd-analyze look only there."""
    root = tmp_path / "root"
    installed = root / "etc/systemd/system"
    installed.mkdir(parents=True)
    (installed / "dropd.service").write_text(unit, encoding="utf-8")
    if drop_in is not None:
        (installed / "dropd.service.d").mkdir()
        (installed / "dropd.service.d" / "folders.conf").write_text(drop_in, encoding="utf-8")
    shipped = directives(UNIT.read_text(encoding="utf-8"))
    # Always the shipped unit's programs, so that a unit naming another one is caught.
    for command in shipped["ExecStart"] + shipped["ExecReload"]:
        program = root / command.split()[0].lstrip("/")
        program.parent.mkdir(parents=True, exist_ok=True)
        program.write_text("#!/bin/sh\n", encoding="utf-8")
        program.chmod(0o755)
    vendor = root / "usr/lib/systemd/system"
    vendor.mkdir(parents=True)
    named = {u for k in ("Wants", "After") for v in shipped.get(k, []) for u in v.split()}
    for target in DEFAULT_TARGETS | named:
        (vendor / target).write_text("[Unit]\nDescription=stub\n", encoding="utf-8")
    return root


def verify(root: Path) -> list[str]:
    """What `systemd-analyze verify` says about dropd.service in `root`; [] when all is well.

    verify exits 0 on unknown keys and values it cannot parse, so every line it prints
    counts as a problem (this machine prints nothing else for a good unit).
    """
    analyze = tool("systemd-analyze")
    result = run(
        analyze, "verify", f"--root={root}", "--man=no", "--generators=no", "dropd.service"
    )
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    if result.returncode != 0 and not lines:
        lines.append(f"systemd-analyze verify exited {result.returncode}")
    return lines


def exposure(root: Path) -> float:
    """The "Overall exposure level" of `systemd-analyze security --offline=true` (0 to 10)."""
    analyze = tool("systemd-analyze")
    result = run(analyze, "security", "--offline=true", f"--root={root}", "dropd.service")
    match = re.search(r"Overall exposure level for dropd\.service: (\d+\.\d+)", result.stdout)
    assert match, f"no exposure level in:\n{result.stdout}{result.stderr}"
    return float(match.group(1))


@pytest.mark.parametrize("drop_in", ["none", "as shipped", "with its examples on"])
def test_systemd_unit_passes_verify(tmp_path: Path, drop_in: str) -> None:
    """The unit alone, and with the folders drop-in, gives systemd-analyze verify nothing to say."""
    folders = FOLDERS.read_text(encoding="utf-8")
    text = {"none": None, "as shipped": folders, "with its examples on": with_examples(folders)}
    root = unit_root(tmp_path, UNIT.read_text(encoding="utf-8"), text[drop_in])
    assert verify(root) == []


@pytest.mark.parametrize(
    ("where", "old", "new"),
    [
        ("unit", "WatchdogSec=", "WatchdogSecs="),
        ("unit", "ProtectSystem=strict", "ProtectSystem=strictest"),
        ("unit", "SystemCallFilter=@system-service", "SystemCallFilter=@system-servic"),
        ("unit", "UMask=0027", "UMask=0999"),
        ("unit", "ExecStart=/opt/dropd/bin/dropd", "ExecStart=/opt/dropd/bin/dropdd"),
        ("drop-in", "ReadWritePaths=", "ReadWritePath="),
    ],
)
def test_systemd_verify_catches_a_broken_unit(
    tmp_path: Path, where: str, old: str, new: str
) -> None:
    """A misspelt key, a bad value or a missing program is caught, though verify exits 0."""
    unit, drop_in = UNIT.read_text(encoding="utf-8"), FOLDERS.read_text(encoding="utf-8")
    if where == "unit":
        assert old in unit
        unit = unit.replace(old, new)
    else:
        assert old in drop_in
        drop_in = drop_in.replace(old, new)
    problems = verify(unit_root(tmp_path, unit, drop_in))
    assert problems, f"verify said nothing about {new!r}"
    assert all("dropd.service" in line or "folders.conf" in line for line in problems)


@pytest.mark.parametrize("drop_in", [False, True])
def test_systemd_unit_exposure_stays_low(tmp_path: Path, drop_in: bool) -> None:
    """systemd-analyze security scores the hardened unit at most EXPOSURE_LIMIT (of 10)."""
    folders = with_examples(FOLDERS.read_text(encoding="utf-8")) if drop_in else None
    level = exposure(unit_root(tmp_path, UNIT.read_text(encoding="utf-8"), folders))
    assert level <= EXPOSURE_LIMIT, f"exposure {level} is over {EXPOSURE_LIMIT}"


# -- the unit against what dropd does ------------------------------------------------------


def test_systemd_unit_works_on_systemd_252() -> None:
    """Type=notify with a SIGHUP ExecReload: notify-reload only arrived in systemd 253."""
    unit = directives(UNIT.read_text(encoding="utf-8"))
    assert unit["Type"] == ["notify"]
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]


def test_systemd_exec_start_is_the_run_command() -> None:
    """ExecStart runs `dropd run` from the /opt/dropd venv with the /etc/dropd config."""
    program, *args = directives(UNIT.read_text(encoding="utf-8"))["ExecStart"][0].split()
    parsed = build_parser().parse_args(args)
    assert program == "/opt/dropd/bin/dropd"
    assert parsed.command == "run"
    assert choose_config(parsed.config, {}).path == Path("/etc/dropd/dropd.toml")


def test_systemd_timeouts_fit_the_daemon() -> None:
    """Stopping outlasts dropd's grace for an upload; the loop pings well within WatchdogSec."""
    unit = directives(UNIT.read_text(encoding="utf-8"))
    assert seconds(unit["TimeoutStopSec"][0]) > STOP_GRACE_SECONDS
    # dropd pings every half WatchdogSec, from a loop that may sleep LOOP_CEILING_SECONDS.
    assert seconds(unit["WatchdogSec"][0]) / 2 > 2 * LOOP_CEILING_SECONDS
    assert unit["RestartPreventExitStatus"] == ["2"]  # dropd's exit on a bad config


def test_systemd_config_folder_is_read_only_to_dropd() -> None:
    """/etc/dropd is tmpfiles' (root:dropd 0750), not the unit's: ConfigurationDirectory=
    would mount it writable inside ProtectSystem=strict, leaving only its mode."""
    unit = directives(UNIT.read_text(encoding="utf-8"))
    assert not {"ConfigurationDirectory", "ConfigurationDirectoryMode"} & unit.keys()
    lines = [line.split() for line in TMPFILES.read_text(encoding="utf-8").splitlines()]
    entry = next(fields for fields in lines if fields[:2] == ["d", "/etc/dropd"])
    assert entry[2:5] == ["0750", "root", "dropd"]


def test_systemd_world_writable_run_and_shm_are_read_only() -> None:
    """ProtectSystem=strict leaves /run (with /run/lock, 1777) and /dev/shm writable."""
    unit = directives(UNIT.read_text(encoding="utf-8"))
    assert {"/run", "/dev/shm"} <= {p for v in unit["ReadOnlyPaths"] for p in v.split()}


# -- sysusers and tmpfiles -----------------------------------------------------------------


def sysusers(root: Path, text: str) -> subprocess.CompletedProcess[str]:
    """Run systemd-sysusers with `text` on `root` (its /etc/passwd and /etc/group)."""
    conf = root.parent / "dropd.sysusers"
    conf.write_text(text, encoding="utf-8")
    (root / "etc").mkdir(parents=True, exist_ok=True)
    return run(tool("systemd-sysusers"), f"--root={root}", str(conf))


def id_of(root: Path, database: str, name: str) -> int:
    """The uid or gid of `name` in `root`'s etc/passwd or etc/group."""
    for line in (root / "etc" / database).read_text(encoding="utf-8").splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return int(fields[2])
    raise AssertionError(f"{name} is not in {database}")


def test_systemd_sysusers_creates_a_system_user(tmp_path: Path) -> None:
    """The dropd user and group: a system id, home /var/lib/dropd, no login shell."""
    root = tmp_path / "root"
    result = sysusers(root, SYSUSERS.read_text(encoding="utf-8"))
    said = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 0, result.stderr
    assert all(re.fullmatch(r"Creating (group|user) 'dropd' .*", line) for line in said), said
    passwd = (root / "etc/passwd").read_text(encoding="utf-8").splitlines()
    entry = next(e for e in passwd if e.startswith("dropd:"))
    _, _, uid, gid, _, home, shell = entry.split(":")
    assert (home, shell) == ("/var/lib/dropd", "/usr/sbin/nologin")
    assert int(uid) < 1000 and int(gid) == id_of(root, "group", "dropd")


def test_systemd_sysusers_catches_a_broken_line(tmp_path: Path) -> None:
    """The check above would fail on a line sysusers cannot take."""
    result = sysusers(tmp_path / "root", "u dropd - - /var/lib/dropd\nx dropd\n")
    assert result.returncode != 0
    assert "Unknown command type 'x'" in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="giving folders to root and dropd needs root")
def test_systemd_tmpfiles_creates_the_folders(tmp_path: Path) -> None:
    """Config root:dropd 0750, secrets root 0700, drop folders setgid for the writers' group."""
    root = tmp_path / "root"
    assert sysusers(root, with_examples(SYSUSERS.read_text(encoding="utf-8"))).returncode == 0
    conf = tmp_path / "dropd.tmpfiles"
    conf.write_text(with_examples(TMPFILES.read_text(encoding="utf-8")), encoding="utf-8")
    result = run(tool("systemd-tmpfiles"), f"--root={root}", "--create", str(conf))
    assert (result.returncode, result.stdout + result.stderr) == (0, "")
    dropd, school = id_of(root, "passwd", "dropd"), id_of(root, "group", "music-sis")
    expected = {
        "etc/dropd": (0o750, 0, id_of(root, "group", "dropd")),
        "etc/dropd/credentials": (0o700, 0, 0),
        "srv/drop": (0o755, 0, 0),
        "srv/drop/music": (0o2770, dropd, school),
    }
    for path, (mode, uid, gid) in expected.items():
        info = (root / path).stat()
        assert (info.st_mode & 0o7777, info.st_uid, info.st_gid) == (mode, uid, gid), path


def test_systemd_tmpfiles_catches_a_broken_line(tmp_path: Path) -> None:
    """systemd-tmpfiles reports a line it cannot take, so the check above means something."""
    conf = tmp_path / "broken.tmpfiles"
    conf.write_text("d /etc/dropd 9750 root root -\n", encoding="utf-8")
    result = run(tool("systemd-tmpfiles"), f"--root={tmp_path / 'root'}", "--create", str(conf))
    assert result.returncode != 0
    assert "Invalid mode '9750'" in result.stderr


# -- the example configuration -------------------------------------------------------------


def test_systemd_example_config_is_valid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """check-config passes once the drop folders exist (here under tmp_path)."""
    text = CONFIG.read_text(encoding="utf-8").replace('"/srv/drop/', f'"{tmp_path}/srv/drop/')
    config = tmp_path / "dropd.toml"
    config.write_text(text, encoding="utf-8")
    for group in load_config(config).groups.values():
        group.folder.mkdir(parents=True)
    assert check_config_command(config) == 0
    assert capsys.readouterr().out == f"{config}: ok (2 environments, 2 groups)\n"


def test_systemd_example_config_lacks_only_folders_on_this_machine() -> None:
    """As shipped, the only problems check-config can find are drop folders not made yet."""
    for problem in check_paths(load_config(CONFIG)):
        assert re.fullmatch(r"groups\.[a-z-]+\.folder: /srv/drop/\S+ does not exist; .*", problem)


def test_systemd_example_config_fits_the_unit() -> None:
    """state_dir is the unit's StateDirectory, folders are in ReadWritePaths, secrets are
    credentials the unit shows how to load."""
    unit_text = UNIT.read_text(encoding="utf-8")
    unit, folders = directives(unit_text), directives(FOLDERS.read_text(encoding="utf-8"))
    config = load_config(CONFIG)
    assert config.daemon.state_dir == Path("/var/lib") / unit["StateDirectory"][0]
    writable = [Path(p.removeprefix("-")) for v in folders["ReadWritePaths"] for p in v.split()]
    for group in config.groups.values():
        assert any(group.folder.is_relative_to(path) for path in writable), group.folder
    for env in config.environments.values():
        assert env.secret.kind is SecretKind.CREDENTIAL
        name = env.secret.value
        assert f"LoadCredential={name}:/etc/dropd/credentials/{name}" in unit_text
