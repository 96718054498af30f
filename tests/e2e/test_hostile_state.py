"""dropd's own state_dir against mistakes: two daemons on one state_dir, a state_dir in a drop
folder, a link where the lock goes; and short commands whose stdout is closed early."""

from __future__ import annotations

import json
import os
import resource
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
from harness import (
    USERS,
    DaemonProcess,
    SandboxProcess,
    drop,
    dropd_command,
    music_group,
    receipts,
    run_dropd,
    sandbox_environment,
    start_daemon,
    start_ready,
    toml_config,
    wait_for,
    write_secret,
)

Processes = list[SandboxProcess | DaemonProcess]
KEEP_STATE = "keep dropd's state outside the drop folders (e.g. /var/lib/dropd)"


def exit_code(daemon: DaemonProcess) -> int:
    """Wait for `daemon` to exit by itself; its exit code."""
    wait_for(lambda: daemon.process.poll() is not None, "dropd to exit")
    return daemon.process.returncode


def problems(daemon: DaemonProcess) -> list[str]:
    """The problems `dropd run` logged before it stopped."""
    return [e["problem"] for e in daemon.events() if e.get("event") == "config_invalid"]


def status_pid(state_dir: Path) -> int | None:
    try:
        data: dict[str, Any] = json.loads((state_dir / "status.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    pid = data.get("pid")
    return pid if isinstance(pid, int) else None


def second_config(tmp_path: Path, sandbox: SandboxProcess, state_dir: Path) -> Path:
    """Another config, with a group of its own, on `state_dir`."""
    root = tmp_path / "second"
    (root / "art").mkdir(parents=True)
    secret = write_secret(root / "test.secret", "secret-a-1234")
    environments = {"test": sandbox_environment(sandbox, "unit-a", secret)}
    groups = {"art": {"environment": "test", "folder": str(root / "art")}}
    return toml_config(root, environments, groups, state_dir=str(state_dir))


# --- one dropd per state_dir -------------------------------------------------------------------


def test_second_run_on_one_state_dir_exits_2_and_names_the_first(
    tmp_path: Path, sandbox: SandboxProcess, processes: Processes
) -> None:
    config, folder = music_group(tmp_path, sandbox)
    state_dir = tmp_path / "state"
    first = start_ready(processes, config, tmp_path / "first.log")
    wait_for(lambda: status_pid(state_dir) == first.process.pid, "the first's status.json")

    second = start_daemon(second_config(tmp_path, sandbox, state_dir), tmp_path / "second.log")
    processes.append(second)
    assert exit_code(second) == 2, second.text()
    assert problems(second) == [
        f"daemon.state_dir: another dropd (pid {first.process.pid}) runs with state_dir "
        f"{state_dir}; stop it, or give this one a state_dir of its own"
    ]
    assert not [e for e in second.events() if e.get("event") == "daemon_starting"]
    assert not (tmp_path / "second" / "art" / ".dropd").exists(), "it took no group"

    assert first.process.poll() is None
    assert status_pid(state_dir) == first.process.pid
    drop(folder, "users.csv", USERS)  # the first works on as before
    wait_for(lambda: receipts(folder), "the first dropd's receipt")
    assert status_pid(state_dir) == first.process.pid
    assert first.stop() == 0


def test_run_after_a_dropd_killed_with_sigkill_is_not_blocked_by_its_lock(
    tmp_path: Path, sandbox: SandboxProcess, processes: Processes
) -> None:
    config, _ = music_group(tmp_path, sandbox)
    first = start_ready(processes, config, tmp_path / "first.log")
    first.process.kill()
    first.process.wait(timeout=60)
    assert (tmp_path / "state" / "lock").read_text() == f"{first.process.pid}\n"

    again = start_ready(processes, config, tmp_path / "again.log")
    assert (tmp_path / "state" / "lock").read_text() == f"{again.process.pid}\n"
    assert again.stop() == 0


def test_run_refuses_a_link_where_the_lock_goes(
    tmp_path: Path, sandbox: SandboxProcess, processes: Processes
) -> None:
    config, _ = music_group(tmp_path, sandbox)
    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o700)
    target = tmp_path / "elsewhere"
    (state_dir / "lock").symlink_to(target)
    daemon = start_daemon(config, tmp_path / "daemon.log")
    processes.append(daemon)
    assert exit_code(daemon) == 2, daemon.text()
    assert problems(daemon) == [
        f"daemon.state_dir: {state_dir / 'lock'} is a symbolic link, and dropd never follows "
        "one there; remove it (dropd makes the lock file itself)"
    ]
    assert not target.exists()


def open_files_limits(pid: int) -> tuple[int, int]:
    """The soft and hard limits of open files of process `pid`, from /proc."""
    for line in Path(f"/proc/{pid}/limits").read_text(encoding="ascii").splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError(f"no open files limit for pid {pid}")


def test_run_raises_its_open_files_limit_to_the_hard_limit(
    tmp_path: Path, sandbox: SandboxProcess, processes: Processes
) -> None:
    config, _ = music_group(tmp_path, sandbox)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard <= 1024:
        pytest.skip(f"the hard limit of open files is {hard}: nothing to raise")
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))  # as systemd starts a service
    try:
        daemon = start_daemon(config, tmp_path / "daemon.log")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    processes.append(daemon)
    daemon.wait_event("daemon_ready")
    assert open_files_limits(daemon.process.pid) == (hard, hard)


# --- state_dir apart from the drop folders ------------------------------------------------------


def test_check_config_refuses_a_state_dir_that_is_a_groups_folder(
    tmp_path: Path, sandbox: SandboxProcess
) -> None:
    folder = tmp_path / "drop" / "music"
    config, _ = music_group(tmp_path, sandbox, state_dir=str(folder))
    done = run_dropd("check-config", "--config", str(config))
    assert (done.returncode, done.stdout) == (2, "")
    assert (
        done.stderr == f"daemon.state_dir: {folder} is also groups.music's folder; {KEEP_STATE}\n"
    )


def test_run_refuses_a_state_dir_inside_a_groups_folder(
    tmp_path: Path, sandbox: SandboxProcess, processes: Processes
) -> None:
    folder = tmp_path / "drop" / "music"
    config, _ = music_group(tmp_path, sandbox, state_dir=str(folder / "state"))
    daemon = start_daemon(config, tmp_path / "daemon.log")
    processes.append(daemon)
    assert exit_code(daemon) == 2, daemon.text()
    assert problems(daemon) == [
        f"daemon.state_dir: {folder / 'state'} is inside groups.music's folder {folder}; "
        f"{KEEP_STATE}"
    ]
    assert not (folder / "state").exists()
    assert not (folder / ".dropd").exists()


def test_run_refuses_a_state_dir_that_links_into_a_groups_folder(
    tmp_path: Path, sandbox: SandboxProcess, processes: Processes
) -> None:
    folder = tmp_path / "drop" / "music"
    config, _ = music_group(tmp_path, sandbox, state_dir=str(tmp_path / "state"))
    (folder / "state").mkdir()
    (tmp_path / "state").symlink_to(folder / "state")
    daemon = start_daemon(config, tmp_path / "daemon.log")
    processes.append(daemon)
    assert exit_code(daemon) == 2, daemon.text()
    assert problems(daemon) == [
        f"daemon.state_dir: {tmp_path / 'state'} ({folder / 'state'} once links are followed) "
        f"is inside groups.music's folder {folder}; {KEEP_STATE}"
    ]
    assert list((folder / "state").iterdir()) == []


# --- short commands and a closed stdout ---------------------------------------------------------


def run_with_stdout_closed(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `dropd ARGS` with stdout a pipe whose reader closed it before dropd started."""
    reader, writer = os.pipe()
    os.close(reader)
    try:
        return subprocess.run(
            [*dropd_command(), *args],
            stdout=writer,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(writer)


def assert_quiet(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr
    assert "BrokenPipe" not in stderr, stderr
    assert "Exception ignored" not in stderr, stderr


def test_status_piped_to_head_ends_quietly(
    tmp_path: Path, sandbox: SandboxProcess, processes: Processes
) -> None:
    config, _ = music_group(tmp_path, sandbox)
    start_ready(processes, config, tmp_path / "daemon.log")
    wait_for(lambda: (tmp_path / "state" / "status.json").exists(), "status.json")
    status = shlex.join([*dropd_command(), "status", "--config", str(config)])
    done = subprocess.run(
        ["sh", "-c", f"{status} | head -c 1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, "d")  # "dropd running (pid ...)"
    assert_quiet(done.stderr)


@pytest.mark.parametrize("command", ["status", "check-config", "check"])
def test_short_command_with_stdout_closed_exits_141_quietly(
    tmp_path: Path, sandbox: SandboxProcess, command: str
) -> None:
    config, folder = music_group(tmp_path, sandbox)
    (folder / "users.csv").write_bytes(USERS)
    args = [command, "--config", str(config)]
    if command == "check":
        args.append(str(folder))
    done = run_with_stdout_closed(*args)
    assert done.returncode == 141, done.stderr
    assert_quiet(done.stderr)
