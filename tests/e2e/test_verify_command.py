"""`dropd verify` as a real process against `dropd sandbox`: each step, and nothing changed."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import (
    SandboxProcess,
    music_group,
    run_dropd,
    sandbox_environment,
    toml_config,
    write_secret,
)

STEPS = ["config", "folder", "token", "endpoint"]
Tree = dict[str, tuple[int, int, int]]


def snapshot(root: Path) -> Tree:
    """Every path under `root` with its mode, size and mtime: any change shows."""
    tree: Tree = {}
    for path in [root, *root.rglob("*")]:
        info = path.lstat()
        tree[str(path.relative_to(root))] = (info.st_mode, info.st_size, info.st_mtime_ns)
    return tree


def verify(config: Path, *groups: str) -> tuple[int, dict[tuple[str, str], str], str]:
    """`dropd verify`: exit code, {(group, step): result}, stderr."""
    done = run_dropd("verify", "--config", str(config), *groups)
    results = {}
    for line in done.stdout.splitlines():
        group, step, result = line.split(maxsplit=2)
        results[group, step] = result
    return done.returncode, results, done.stderr


def test_verify_all_ok_changes_nothing(tmp_path: Path, sandbox: SandboxProcess) -> None:
    config, folder = music_group(tmp_path, sandbox)
    for name in ("sent", "failed", ".dropd"):
        (folder / name).mkdir()
    before = snapshot(tmp_path)
    done = run_dropd("verify", "--config", str(config))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == [f"music  {step:<8}  ok" for step in STEPS]
    assert snapshot(tmp_path) == before, "no file created, changed or removed"
    assert not (tmp_path / "state").exists(), "no state_dir, no token cache"
    assert sandbox.uploads() == []
    for text in (done.stdout, done.stderr):
        assert "secret-a-1234" not in text and "Bearer" not in text


def test_verify_wrong_secret_fails_the_token_step(tmp_path: Path, sandbox: SandboxProcess) -> None:
    config, _ = music_group(tmp_path, sandbox)
    write_secret(tmp_path / "test.secret", "not-the-secret")
    code, results, _ = verify(config)
    assert code == 1
    assert results["music", "config"] == "ok" and results["music", "folder"] == "ok"
    token = results["music", "token"]
    assert token.startswith("failed: environment test: the token endpoint rejected client")
    assert "'unit-a'" in token and "check client_id and the secret" in token
    assert results["music", "endpoint"] == "ok", "reachable, even without a token"


def test_verify_sandbox_stopped_fails_token_and_endpoint(
    tmp_path: Path, sandbox: SandboxProcess
) -> None:
    config, _ = music_group(tmp_path, sandbox)
    sandbox.stop()
    code, results, _ = verify(config)
    assert code == 1
    assert f"the token endpoint {sandbox.token_url} cannot be reached" in results["music", "token"]
    endpoint = results["music", "endpoint"]
    assert endpoint.startswith(f"failed: {sandbox.url}/rest/upload/music/zip cannot be reached")
    assert "check base_url, the network" in endpoint


def test_verify_folder_missing(tmp_path: Path, sandbox: SandboxProcess) -> None:
    config, folder = music_group(tmp_path, sandbox)
    folder.rmdir()
    code, results, _ = verify(config)
    assert code == 1
    assert results["music", "folder"] == (
        f"failed: {folder} does not exist; create it or fix the group's folder"
    )
    assert results["music", "token"] == "ok"
    assert not folder.exists(), "verify creates nothing"


def test_verify_names_one_group_of_two_and_refuses_an_unknown_one(
    tmp_path: Path, sandbox: SandboxProcess
) -> None:
    secret = write_secret(tmp_path / "test.secret", "secret-a-1234")
    env = {"test": sandbox_environment(sandbox, "unit-a", secret)}
    groups = {}
    for name in ("music", "art"):
        (tmp_path / "drop" / name).mkdir(parents=True)
        groups[name] = {"environment": "test", "folder": str(tmp_path / "drop" / name)}
    (tmp_path / "drop" / "music").rmdir()  # music would fail: only art is checked
    config = toml_config(tmp_path, env, groups)

    code, results, _ = verify(config, "art")
    assert code == 0 and list(results) == [("art", step) for step in STEPS]

    code, results, _ = verify(config)
    assert code == 1 and {group for group, _ in results} == {"music", "art"}

    code, results, stderr = verify(config, "art", "nosuch")
    assert code == 2 and results == {}
    assert "there is no group 'nosuch' (groups: music, art)" in stderr


def test_verify_bad_config_exits_2_with_every_problem(tmp_path: Path) -> None:
    config = tmp_path / "dropd.toml"
    config.write_text('[daemon]\nquiet_seconds = 0\n\n[groups.music]\nenvironment = "x"\n')
    done = run_dropd("verify", "--config", str(config))
    assert done.returncode == 2 and done.stdout == ""
    problems = done.stderr.splitlines()
    assert any(p.startswith("daemon.quiet_seconds:") for p in problems)
    assert any(p.startswith("groups.music.folder:") for p in problems)
    assert any(p.startswith("groups.music.environment:") for p in problems)


@pytest.fixture
def tmpfs() -> Iterator[list[Path]]:
    """Mount points made by a test, unmounted at its end."""
    points: list[Path] = []
    yield points
    for point in reversed(points):
        subprocess.run(["umount", str(point)], capture_output=True, check=False)


def mount_tmpfs(points: list[Path], target: Path, *options: str) -> None:
    """`mount -t tmpfs`; the test is skipped where that is not allowed."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    args = ["mount", "-t", "tmpfs", *options, "tmpfs", str(target)]
    try:
        done = subprocess.run(args, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        pytest.skip("there is no `mount` command here")
    if done.returncode != 0:
        pytest.skip(f"mount is not permitted here: {done.stderr.strip()}")
    points.append(target)


def test_verify_sent_on_another_file_system(
    tmp_path: Path, sandbox: SandboxProcess, tmpfs: list[Path]
) -> None:
    config, folder = music_group(tmp_path, sandbox)
    (folder / "sent").mkdir()
    mount_tmpfs(tmpfs, folder / "sent")
    before = snapshot(tmp_path)
    code, results, _ = verify(config)
    assert code == 1
    folder_result = results["music", "folder"]
    assert folder_result.startswith(f"failed: {folder / 'sent'} is on another file system")
    assert "cannot cross file systems" in folder_result
    assert results["music", "token"] == "ok"
    assert snapshot(tmp_path) == before


def test_verify_read_only_folder(
    tmp_path: Path, sandbox: SandboxProcess, tmpfs: list[Path]
) -> None:
    config, folder = music_group(tmp_path, sandbox)
    mount_tmpfs(tmpfs, folder, "-o", "ro")
    code, results, _ = verify(config)
    assert code == 1
    assert results["music", "folder"] == (
        f"failed: {folder} is not writable: the file system is read-only; remount it read-write"
    )
