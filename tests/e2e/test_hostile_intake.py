"""A hostile drop folder at intake: a file dropd's user cannot read (dropd run as a real
unprivileged user), a `.done` marker left from an earlier drop while a writer writes in
place, and a writer that keeps writing after its file was claimed. Nothing half-written
goes up, nothing unreadable stalls the line, and each file says where it ended."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import (
    UNPRIVILEGED,
    USERS,
    DaemonProcess,
    SandboxProcess,
    drop,
    errors,
    group_status,
    music_group,
    read,
    receipts,
    sandbox_environment,
    start_daemon_as,
    start_ready,
    toml_config,
    unprivileged_problem,
    wait_for,
    write_secret,
)

Processes = list[SandboxProcess | DaemonProcess]
H_USERS = b"user_id,login_id,first_name,last_name,email,status\n"
ROWS = [b"g%d,u%d@example.edu,A,L,u%d@example.edu,active\n" % (i, i, i) for i in range(12)]


def uploaded_users(sandbox: SandboxProcess) -> list[bytes]:
    """The bytes of every users.csv the sandbox was sent, in order."""
    return [
        (upload / entry["stored_as"]).read_bytes()
        for upload in sandbox.uploads()
        for entry in sandbox.request(upload)["files"]
        if entry["name"] == "users.csv"
    ]


# -- a file dropd cannot read -------------------------------------------------------------


@pytest.fixture
def open_scratch() -> Iterator[Path]:
    """A folder every user may enter (pytest's own are root's alone), removed at the end."""
    scratch = Path(tempfile.mkdtemp(prefix="dropd-user-"))
    scratch.chmod(0o755)
    yield scratch
    shutil.rmtree(scratch, ignore_errors=True)


def test_a_file_dropd_cannot_read_fails_alone_at_intake_and_the_line_goes_on(
    open_scratch: Path, sandbox: SandboxProcess, processes: Processes
) -> None:
    problem = unprivileged_problem(open_scratch / "probe")
    if problem is not None:
        pytest.skip(f"dropd cannot run as an unprivileged user here: {problem}")
    uid, gid = UNPRIVILEGED
    writer = uid + 1  # another user, who drops files dropd's user may not read
    folder, state = open_scratch / "drop" / "music", open_scratch / "state"
    folder.mkdir(parents=True)
    state.mkdir()
    for path in (folder.parent, folder, state):
        os.chown(path, uid, gid)
    secret = write_secret(open_scratch / "test.secret", "secret-a-1234")
    os.chown(secret, uid, gid)
    config = toml_config(
        open_scratch,
        {"test": sandbox_environment(sandbox, "unit-a", secret)},
        {"music": {"environment": "test", "folder": str(folder)}},
        settle_seconds=0.3,
        quiet_seconds=0.5,
    )
    config.chmod(0o644)
    daemon = start_daemon_as(uid, gid, config, open_scratch / "daemon.log", open_scratch / "ns")
    processes.append(daemon)
    daemon.wait_event("daemon_ready")
    private = USERS.replace(b"g1", b"p1")
    for name, content, mode in (("private.csv", private, 0o600), ("users.csv", USERS, 0o644)):
        path = folder / f".{name}.part"
        path.write_bytes(content)
        os.chown(path, writer, writer)
        path.chmod(mode)
        os.rename(path, folder / name)

    [error] = wait_for(lambda: errors(folder), "the unreadable file to fail")
    [receipt] = wait_for(lambda: receipts(folder), "the readable file to be sent")
    record = read(error)
    assert record["step"] == "intake"
    assert sorted(p.name for p in error.parent.iterdir()) == ["error.json", "private.csv"]
    for words in ('"private.csv"', "cannot be read by dropd's user", f"uid {writer}", "0600"):
        assert words in record["reason"], record["reason"]
    assert (error.parent / "private.csv").read_bytes() == private, "kept as it came"
    assert sorted(p.name for p in receipt.parent.iterdir()) == ["receipt.json", "users.csv"]
    assert uploaded_users(sandbox) == [USERS], "the unreadable file never went up"
    entry = wait_for(lambda: group_status(state, "music"), "the status file")
    assert entry["batches_failed"] == 1
    assert os.stat(folder / ".dropd").st_uid == uid, "dropd really ran as its own user"
    assert daemon.process.poll() is None


# -- markers ------------------------------------------------------------------------------


def stale_marker(folder: Path, name: str) -> Path:
    """A marker left by an earlier drop: an hour old."""
    marker = folder / name
    marker.write_bytes(b"")
    hour_ago = time.time() - 3600
    os.utime(marker, (hour_ago, hour_ago))
    return marker


def write_slowly(path: Path, rows: list[bytes], pause: float) -> threading.Thread:
    """Write `path` in place, a row every `pause` seconds, from a thread."""

    def write() -> None:
        with open(path, "wb") as out:
            out.write(H_USERS)
            for row in rows:
                out.flush()
                time.sleep(pause)
                out.write(row)

    thread = threading.Thread(target=write)
    thread.start()
    return thread


def test_an_old_marker_does_not_make_a_file_written_in_place_ready(
    tmp_path: Path, sandbox: SandboxProcess, processes: Processes
) -> None:
    config, folder = music_group(tmp_path, sandbox, settle_seconds=1.0)
    start_ready(processes, config, tmp_path / "daemon.log")
    stale_marker(folder, "users.csv.done")
    writer = write_slowly(folder / "users.csv", ROWS, 0.25)  # never 1 s unchanged until done
    [receipt] = wait_for(lambda: receipts(folder), "the file, whole, sent")
    writer.join()
    whole = H_USERS + b"".join(ROWS)
    assert (receipt.parent / "users.csv").read_bytes() == whole
    assert uploaded_users(sandbox) == [whole], "the upload holds the whole file"
    assert (receipt.parent / "users.csv.done").exists(), "the marker travels with its file"


def test_required_markers_wait_for_a_marker_newer_than_the_file(
    tmp_path: Path, sandbox: SandboxProcess, processes: Processes
) -> None:
    config, folder = music_group(tmp_path, sandbox, {"done_markers": "required"})
    state = tmp_path / "state"
    start_ready(processes, config, tmp_path / "daemon.log")
    marker = stale_marker(folder, "users.csv.done")
    drop(folder, "users.csv", USERS)

    # dropd has seen the file (it counts as waiting) and not taken it: the marker is older.
    wait_for(lambda: (group_status(state, "music") or {}).get("files_waiting") == 1, "file seen")
    assert (folder / "users.csv").exists() and receipts(folder) == []
    assert sandbox.uploads() == []
    os.utime(marker)  # the writer says again that the file is complete
    [receipt] = wait_for(lambda: receipts(folder), "the file sent once its marker is new")
    assert sorted(p.name for p in receipt.parent.iterdir()) == [
        "receipt.json",
        "users.csv",
        "users.csv.done",
    ]


def test_a_file_written_on_after_its_claim_is_not_sent_until_it_is_still(
    tmp_path: Path, sandbox: SandboxProcess, processes: Processes
) -> None:
    # A writer that makes its marker, then writes on through its open handle: the claim
    # (a rename) does not stop it. What goes up must be the file as it finally is.
    config, folder = music_group(
        tmp_path,
        sandbox,
        quiet_seconds=3,  # the ZIP comes well after the writer's next rows
        retry_initial_seconds=0.5,
        retry_max_seconds=1,
    )
    daemon = start_ready(processes, config, tmp_path / "daemon.log")
    with open(folder / "users.csv", "wb") as out:
        out.write(H_USERS + ROWS[0])
        out.flush()
        (folder / "users.csv.done").write_bytes(b"")  # newer than the file: it counts
        daemon.wait_event("file_claimed", file="users.csv")
        for row in ROWS[1:]:
            out.write(row)
            out.flush()
    whole = H_USERS + b"".join(ROWS)
    [receipt] = wait_for(lambda: receipts(folder), "the whole file sent")
    assert (receipt.parent / "users.csv").read_bytes() == whole
    assert uploaded_users(sandbox) == [whole], "never half of it"
    [entry] = [f for f in read(receipt)["files"] if f["name"] == "users.csv"]
    assert entry["bytes"] == len(whole)
    assert any(e["event"] == "file_still_written" for e in daemon.events())
    assert daemon.process.poll() is None
