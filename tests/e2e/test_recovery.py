"""Recovery against the real daemon: `kill -9` at every recorded state, half-built
ZIPs, a folder that goes away or turns read-only, a disk that fills up. Nothing is lost, and
dropd finds its way back without a restart wherever it can."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import signal
import subprocess
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import (
    COURSES,
    DEADLINE,
    USERS,
    DaemonProcess,
    SandboxProcess,
    drained,
    drop,
    group_status,
    read,
    receipts,
    sandbox_environment,
    start_daemon,
    start_ready,
    toml_config,
    wait_for,
    write_secret,
)

from daemon.base import crashpoints

Processes = list[SandboxProcess | DaemonProcess]

DROPPED = {"users.csv": USERS, "courses.csv": COURSES}
GROUP = "music"


# -- helpers ------------------------------------------------------------------------------


def group_config(tmp_path: Path, sandbox: SandboxProcess, folder: Path, **daemon: Any) -> Path:
    """A config with group `music` on `folder` (created if missing) against `sandbox`."""
    folder.mkdir(parents=True, exist_ok=True)
    secret = write_secret(tmp_path / "test.secret", "secret-a-1234")
    return toml_config(
        tmp_path,
        {"test": sandbox_environment(sandbox, "unit-a", secret)},
        {GROUP: {"environment": "test", "folder": str(folder)}},
        **daemon,
    )


def crash_at(point: str, config: Path, log: Path, processes: Processes) -> None:
    """Run the daemon until it kills itself with SIGKILL at `point`."""
    daemon = start_daemon(config, log, {crashpoints.ENV: point})
    processes.append(daemon)
    returncode = daemon.process.wait(timeout=DEADLINE)
    assert returncode == -signal.SIGKILL, (
        f"dropd exited {returncode}, not at {point}:\n{daemon.text()}"
    )


def restart(config: Path, log: Path, processes: Processes) -> DaemonProcess:
    """Start the daemon again, with no crash point."""
    daemon = start_daemon(config, log, {crashpoints.ENV: ""})
    processes.append(daemon)
    return daemon


def batch_dirs(folder: Path) -> list[Path]:
    work = folder / ".dropd" / "work"
    return sorted(p for p in work.iterdir() if not p.name.startswith(".")) if work.is_dir() else []


def only_batch(folder: Path) -> tuple[Path, dict[str, Any]]:
    """The one batch in the spool and its manifest."""
    [batch] = batch_dirs(folder)
    return batch, read(batch / "manifest.json")


def contents(folder: Path) -> dict[str, bytes]:
    """The regular files directly in `folder`, by name."""
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def top_level_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_file())


def sent_files(folder: Path) -> list[Path]:
    """Every filed original under sent/ (records left out)."""
    return sorted(p for p in (folder / "sent").glob("*/*/*") if p.name != "receipt.json")


def zip_entries(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None, f"{path}: a corrupt entry"
        return {name: archive.read(name) for name in archive.namelist()}


def uploaded(sandbox: SandboxProcess) -> list[dict[str, bytes]]:
    """The entries of every ZIP the sandbox accepted, in arrival order."""
    return [zip_entries(upload / "upload.zip") for upload in sandbox.uploads()]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def wait_status(daemon: DaemonProcess, state_dir: Path, *wanted: str) -> dict[str, Any]:
    """Wait until status.json shows the group in one of `wanted`; the daemon must stay up."""

    def shown() -> dict[str, Any] | None:
        assert daemon.process.poll() is None, f"dropd exited:\n{daemon.text()}"
        entry = group_status(state_dir, GROUP)
        return entry if entry and entry["status"] in wanted else None

    return wait_for(shown, f"status {' or '.join(wanted)} for group {GROUP}")


def wait_filed(daemon: DaemonProcess, folder: Path, names: list[str]) -> None:
    """Wait until every name is filed in sent/ and the spool and the drop folder are empty."""

    def filed() -> bool:
        assert daemon.process.poll() is None, f"dropd exited:\n{daemon.text()}"
        done = sorted(p.name for p in sent_files(folder))
        return done == sorted(names) and drained(folder)

    wait_for(filed, f"{names} filed in sent/ with the spool empty")


# -- what the disk holds at each crash point ------------------------------------------------


def at_intended(folder: Path, sandbox: SandboxProcess) -> None:
    batch, manifest = only_batch(folder)
    assert manifest["state"] == "open"
    assert contents(batch / "files") == {}, "the kill came before the first claim"
    assert {f["name"]: f["kind"] for f in manifest["files"]} == dict.fromkeys(DROPPED, "csv")
    assert contents(folder) == DROPPED
    assert sandbox.uploads() == []


def at_claimed(folder: Path, sandbox: SandboxProcess) -> None:
    batch, manifest = only_batch(folder)
    assert manifest["state"] == "open"
    spooled = contents(batch / "files")
    assert len(spooled) == 1, "the kill came right after the first claim"
    assert {**spooled, **contents(folder)} == DROPPED
    assert sandbox.uploads() == []


def at_closed(folder: Path, sandbox: SandboxProcess) -> None:
    batch, manifest = only_batch(folder)
    assert manifest["state"] == "claimed"
    assert manifest["queued"], "a closed batch has its place in line"
    assert contents(batch / "files") == DROPPED
    assert not (batch / "upload.zip").exists()
    assert top_level_files(folder) == []
    assert sandbox.uploads() == []


def at_zipped(folder: Path, sandbox: SandboxProcess) -> None:
    batch, manifest = only_batch(folder)
    assert manifest["state"] == "zipped"
    built = batch / "upload.zip"
    assert zip_entries(built) == DROPPED
    assert manifest["zip"]["sha256"] == sha256(built.read_bytes())
    assert sandbox.uploads() == []


def at_uploading(folder: Path, sandbox: SandboxProcess) -> None:
    batch, manifest = only_batch(folder)
    assert manifest["state"] == "uploading"
    assert manifest["attempts"] == 1
    assert (batch / "upload.zip").is_file()
    assert sandbox.uploads() == [], "the kill came before the POST"


def at_answered(folder: Path, sandbox: SandboxProcess) -> None:
    batch, manifest = only_batch(folder)
    assert manifest["state"] == "uploading"
    assert manifest["record"] is None
    assert uploaded(sandbox) == [DROPPED]
    assert receipts(folder) == []
    assert contents(batch / "files") == DROPPED


def at_recorded(folder: Path, sandbox: SandboxProcess) -> None:
    batch, manifest = only_batch(folder)
    assert manifest["state"] == "sent"
    assert manifest["record"]["status"] == 200
    assert contents(batch / "files") == DROPPED
    assert receipts(folder) == []
    assert uploaded(sandbox) == [DROPPED]


def at_moved(folder: Path, sandbox: SandboxProcess) -> None:
    batch, manifest = only_batch(folder)
    assert manifest["state"] == "sent"
    assert not (batch / "files").exists()
    [receipt] = receipts(folder)
    assert receipt.parent.name == batch.name
    assert contents(receipt.parent) == {**DROPPED, "receipt.json": receipt.read_bytes()}
    assert uploaded(sandbox) == [DROPPED]


AT_CRASH: dict[str, Callable[[Path, SandboxProcess], None]] = {
    "intended": at_intended,
    "claimed": at_claimed,
    "closed": at_closed,
    "zipped": at_zipped,
    "uploading": at_uploading,
    "answered": at_answered,
    "recorded": at_recorded,
    "moved": at_moved,
}


def test_recovery_covers_every_crash_point() -> None:
    assert set(AT_CRASH) == set(crashpoints.POINTS)


# -- 1. kill -9 at each recorded state, then a restart ----------------------------------------


@pytest.mark.parametrize("point", crashpoints.POINTS)
def test_recovery_after_a_kill_files_every_file_once(
    point: str, tmp_path: Path, sandbox: SandboxProcess, processes: Processes
) -> None:
    folder = tmp_path / "drop" / GROUP
    config = group_config(tmp_path, sandbox, folder)
    # Dropped before the start, so that one scan sees both and claims them together.
    for name, content in DROPPED.items():
        drop(folder, name, content)
    crash_at(point, config, tmp_path / "crashed.log", processes)
    AT_CRASH[point](folder, sandbox)

    daemon = restart(config, tmp_path / "restarted.log", processes)
    wait_filed(daemon, folder, list(DROPPED))
    assert Counter(p.name for p in sent_files(folder)) == Counter(DROPPED.keys())
    assert {p.name: p.read_bytes() for p in sent_files(folder)} == DROPPED
    assert not (folder / "failed").exists()
    assert top_level_files(folder) == []
    assert list((folder / ".dropd" / "work").iterdir()) == []

    records = [read(r) for r in receipts(folder)]
    if point == "answered":
        # The 200 came and was not recorded: the one case where the batch goes up twice.
        assert uploaded(sandbox) == [DROPPED, DROPPED]
        [record] = records
        assert record["resent_after_restart"] is True
        assert record["attempts"] == 2
    else:
        received = Counter(name for entries in uploaded(sandbox) for name in entries)
        assert received == Counter(DROPPED.keys()), "each file went up exactly once"
        assert {n: c for e in uploaded(sandbox) for n, c in e.items()} == DROPPED
    if point in ("claimed", "closed", "zipped", "recorded", "moved"):
        assert [r["resent_after_restart"] for r in records] == [False] * len(records)
    assert all(r["status"] == 200 for r in records)
    assert daemon.stop() == 0


# -- 2. a half-built ZIP is rebuilt, never sent ---------------------------------------------


def test_recovery_rebuilds_a_half_built_zip(
    tmp_path: Path, sandbox: SandboxProcess, processes: Processes
) -> None:
    folder = tmp_path / "drop" / GROUP
    config = group_config(tmp_path, sandbox, folder)
    for name, content in DROPPED.items():
        drop(folder, name, content)
    crash_at("closed", config, tmp_path / "crashed.log", processes)
    batch, manifest = only_batch(folder)
    assert manifest["state"] == "claimed"
    whole = io.BytesIO()
    with zipfile.ZipFile(whole, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in DROPPED.items():
            archive.writestr(name, content)
    (batch / "upload.zip.partial").write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    garbage = b"PK\x03\x04" + os.urandom(3000)
    (batch / "upload.zip").write_bytes(garbage)

    daemon = restart(config, tmp_path / "restarted.log", processes)
    wait_filed(daemon, folder, list(DROPPED))
    [upload] = sandbox.uploads()
    sent_zip = (upload / "upload.zip").read_bytes()
    assert sent_zip != garbage
    assert zip_entries(upload / "upload.zip") == DROPPED
    [receipt] = receipts(folder)
    assert read(receipt)["zip"]["sha256"] == sha256(sent_zip)
    assert {p.name: p.read_bytes() for p in sent_files(folder)} == DROPPED


# -- 3. a folder that disappears, or turns read-only, comes back ------------------------------


def test_recovery_folder_renamed_away_and_back(
    tmp_path: Path, sandbox: SandboxProcess, processes: Processes
) -> None:
    folder, aside = tmp_path / "drop" / GROUP, tmp_path / "drop" / "music-aside"
    config = group_config(tmp_path, sandbox, folder, poll_seconds=0.5)
    state_dir = tmp_path / "state"
    daemon = start_ready(processes, config, tmp_path / "daemon.log")
    wait_status(daemon, state_dir, "Valid")

    os.rename(folder, aside)
    lost = wait_status(daemon, state_dir, "Error")
    assert lost["step"] == "folder"
    assert str(folder) in lost["reason"]
    assert not folder.exists(), "dropd does not make a new, empty folder in its place"

    os.rename(aside, folder)
    drop(folder, "users.csv", USERS)
    wait_filed(daemon, folder, ["users.csv"])
    assert uploaded(sandbox) == [{"users.csv": USERS}]
    back = wait_status(daemon, state_dir, "Valid")
    assert (back["step"], back["reason"]) == ("", "")
    assert daemon.stop() == 0


class Mounts:
    """Mounts made by a test, unmounted at its end (latest first)."""

    def __init__(self) -> None:
        self.points: list[Path] = []

    def mount(self, *args: str, target: Path) -> None:
        """`mount ARGS TARGET`; the test is skipped where mounting is not permitted."""
        try:
            done = subprocess.run(
                ["mount", *args, str(target)], capture_output=True, text=True, check=False
            )
        except FileNotFoundError:
            pytest.skip("there is no `mount` command here")
        if done.returncode != 0 and not self.points:
            pytest.skip(f"mount {' '.join(args)} is not permitted here: {done.stderr.strip()}")
        assert done.returncode == 0, done.stderr
        self.points.append(target)

    def remount(self, options: str, target: Path) -> None:
        """Change a mount's options in place (it stays on the list to unmount)."""
        done = subprocess.run(
            ["mount", "-o", f"remount,{options}", str(target)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr

    def unmount(self, target: Path) -> None:
        """`umount TARGET`, again while the daemon's scan briefly keeps it busy."""

        def unmounted() -> bool:
            done = subprocess.run(["umount", str(target)], capture_output=True, check=False)
            return done.returncode == 0

        wait_for(unmounted, f"umount {target}")
        self.points.remove(target)

    def unmount_all(self) -> None:
        for target in reversed(self.points):
            done = subprocess.run(["umount", str(target)], capture_output=True, check=False)
            if done.returncode != 0:
                subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)
        self.points.clear()


@pytest.fixture
def mounts() -> Iterator[Mounts]:
    """Requested before `processes`, so the daemons are stopped before the unmounting."""
    made = Mounts()
    yield made
    made.unmount_all()


def test_recovery_read_only_folder_holds_files_until_writable(
    tmp_path: Path, mounts: Mounts, sandbox: SandboxProcess, processes: Processes
) -> None:
    # Root writes through any file mode, so the folder is made read-only for dropd alone:
    # a read-only bind mount over it, while the writer drops through a writable one.
    folder, writer = tmp_path / "drop" / GROUP, tmp_path / "writer"
    writer.mkdir()
    config = group_config(tmp_path, sandbox, folder, poll_seconds=0.5)
    state_dir = tmp_path / "state"
    mounts.mount("--bind", str(folder), target=writer)
    daemon = start_ready(processes, config, tmp_path / "daemon.log")
    mounts.mount("--bind", str(folder), target=folder)
    mounts.remount("bind,ro", folder)

    drop(writer, "users.csv", USERS)
    refused = wait_status(daemon, state_dir, "Error")
    assert refused["step"] in ("folder", "intake")
    assert str(folder) in refused["reason"]
    assert contents(writer) == {"users.csv": USERS}, "the file waits where it was dropped"
    assert batch_dirs(writer) == []
    assert sandbox.uploads() == []

    mounts.unmount(folder)
    wait_filed(daemon, folder, ["users.csv"])
    assert uploaded(sandbox) == [{"users.csv": USERS}]
    wait_status(daemon, state_dir, "Valid")
    assert daemon.stop() == 0


# -- 4. a full disk ---------------------------------------------------------------------------

DISK = 600 * 1024  # the tmpfs the group folder lives on


def incompressible_users(size: int) -> bytes:
    """A valid users CSV of about `size` bytes that deflate can barely shrink."""
    rows = [b"user_id,login_id,first_name,last_name,email,status\n"]
    total, number = 0, 0
    while total < size:
        h = os.urandom(40).hex()
        login, email = f"{h[:16]}@{h[16:24]}.edu", f"{h[56:72]}@{h[72:]}.edu"
        row = f"u{number},{login},{h[24:40]},{h[40:56]},{email},active\n"
        rows.append(row.encode())
        total, number = total + len(row), number + 1
    return b"".join(rows)


def fill(path: Path) -> None:
    """Write `path` until the disk refuses even one more byte."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for chunk in (b"\0" * 65536, b"\0" * 4096, b"\0"):
            while True:
                try:
                    os.write(fd, chunk)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break
    finally:
        os.close(fd)


def disk_group(tmp_path: Path, sandbox: SandboxProcess, mounts: Mounts, **daemon: Any) -> Path:
    """A 600 KiB tmpfs with the group folder on it; returns the config."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounts.mount("-t", "tmpfs", "-o", f"size={DISK // 1024}k", "tmpfs", target=disk)
    return group_config(
        tmp_path,
        sandbox,
        disk / GROUP,
        retry_initial_seconds=0.2,
        retry_max_seconds=1,
        **daemon,
    )


def spooled_or_waiting(folder: Path) -> dict[str, bytes]:
    """The files still in the drop folder or in a batch of the spool."""
    found = contents(folder)
    for batch in batch_dirs(folder):
        found.update(contents(batch / "files"))
    return found


def test_recovery_disk_full_while_zipping_waits_then_sends(
    tmp_path: Path, mounts: Mounts, sandbox: SandboxProcess, processes: Processes
) -> None:
    config = disk_group(tmp_path, sandbox, mounts)
    folder, state_dir = tmp_path / "disk" / GROUP, tmp_path / "state"
    big = incompressible_users(500_000)
    zipped = len(zlib.compress(big, 6))  # the ZIP is larger still: headers
    assert len(big) < DISK - 64 * 1024 < DISK + 64 * 1024 < len(big) + zipped, "fits, ZIP not"
    daemon = start_ready(processes, config, tmp_path / "daemon.log")

    drop(folder, "users.csv", big)
    stuck = wait_status(daemon, state_dir, "Error")
    assert spooled_or_waiting(folder) == {"users.csv": big}, "nothing is lost"
    assert sandbox.uploads() == []
    assert daemon.process.poll() is None

    mounts.remount("size=8m", tmp_path / "disk")
    wait_filed(daemon, folder, ["users.csv"])
    assert uploaded(sandbox) == [{"users.csv": big}]
    wait_status(daemon, state_dir, "Valid")
    assert daemon.stop() == 0
    # Checked last, so that a wording fault does not hide whether the batch came through.
    assert "the disk is full" in stuck["reason"], stuck["reason"]


def test_recovery_disk_full_while_closing_a_batch_waits_then_sends(
    tmp_path: Path, mounts: Mounts, sandbox: SandboxProcess, processes: Processes
) -> None:
    # A long quiet window: the disk is filled between the claim and the close's manifest.
    config = disk_group(tmp_path, sandbox, mounts, quiet_seconds=3)
    folder, state_dir = tmp_path / "disk" / GROUP, tmp_path / "state"
    daemon = start_ready(processes, config, tmp_path / "daemon.log")

    drop(folder, "users.csv", USERS)
    daemon.wait_event("file_claimed", file="users.csv")
    fill(tmp_path / "disk" / "filler")
    stuck = wait_status(daemon, state_dir, "Error")
    assert "the disk is full" in stuck["reason"], stuck["reason"]
    assert spooled_or_waiting(folder) == {"users.csv": USERS}, "nothing is lost"
    assert sandbox.uploads() == []

    mounts.remount("size=8m", tmp_path / "disk")
    wait_filed(daemon, folder, ["users.csv"])
    assert uploaded(sandbox) == [{"users.csv": USERS}]
    wait_status(daemon, state_dir, "Valid")
    assert daemon.stop() == 0
