"""One owner: two `dropd run` on one folder; one works it, the other stands by."""

from __future__ import annotations

import fcntl
import hashlib
import os
import signal
import uuid
from pathlib import Path
from typing import Any

from harness import (
    DaemonProcess,
    SandboxProcess,
    drained,
    drop,
    group_status,
    read,
    receipts,
    sandbox_environment,
    sent_files,
    start_daemon,
    toml_config,
    uploads_by_batch,
    wait_for,
    write_secret,
)

from daemon.base import crashpoints

GROUP = "music"
ROLE_EVENTS = ("group_owned", "group_standby")


def two_configs(tmp_path: Path, sandbox: SandboxProcess) -> tuple[list[Path], Path]:
    """Two configs (`a`, `b`, each its own state_dir) with the same group folder."""
    folder = tmp_path / "drop" / GROUP
    folder.mkdir(parents=True)
    secret = write_secret(tmp_path / "test.secret", "secret-a-1234")
    configs = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        configs.append(
            toml_config(
                tmp_path / name,
                {"test": sandbox_environment(sandbox, "unit-a", secret)},
                {GROUP: {"environment": "test", "folder": str(folder)}},
            )
        )
    return configs, folder


def users_csv() -> bytes:
    """A valid users CSV whose bytes no other file has."""
    tag = uuid.uuid4().hex
    return (
        "user_id,login_id,first_name,last_name,email,status\n"
        f"{tag},{tag}@example.edu,Guest,One,{tag}@example.edu,active\n"
    ).encode()


def first_role(daemon: DaemonProcess) -> str | None:
    """`group_owned` or `group_standby`, whichever the daemon logged first for the group."""
    for line in daemon.events():
        if line.get("event") in ROLE_EVENTS and line.get("group") == GROUP:
            return str(line["event"])
    assert daemon.process.poll() is None, f"dropd exited:\n{daemon.text()}"
    return None


def status_role(daemon: DaemonProcess) -> str | None:
    """The group's `role` in the daemon's `state_dir/status.json`, once written."""
    status = group_status(daemon.config.parent / "state", GROUP)
    return None if status is None else str(status["role"])


def events_named(daemon: DaemonProcess, *names: str) -> list[dict[str, Any]]:
    return [line for line in daemon.events() if line.get("event") in names]


def filed(folder: Path) -> list[Path] | None:
    """The receipts, once the spool is empty and nothing waits in the folder."""
    return receipts(folder) if drained(folder) else None


def drop_and_wait_filed(folder: Path, dropped: dict[str, bytes], names: list[str]) -> None:
    """Drop files, then wait until all of them are in sent/ and the spool is empty."""
    for name in names:
        dropped[name] = users_csv()
        drop(folder, name, dropped[name])
    wait_for(
        lambda: set(dropped) <= set(sent_files(folder)) and drained(folder),
        f"{names} filed in sent/",
    )


def start_two(
    configs: list[Path], tmp_path: Path, processes: list[SandboxProcess | DaemonProcess]
) -> tuple[DaemonProcess, DaemonProcess]:
    """Start both daemons at once; returns (owner, standby) as they settled it."""
    daemons = [start_daemon(c, tmp_path / f"{c.parent.name}.log") for c in configs]
    processes += daemons
    wait_for(lambda: all(first_role(d) for d in daemons), "both daemons to take a role")
    roles = [first_role(d) for d in daemons]
    assert sorted(r or "" for r in roles) == ["group_owned", "group_standby"], roles
    owner, standby = daemons if roles[0] == "group_owned" else daemons[::-1]
    return owner, standby


def test_owner_one_daemon_works_the_folder_and_the_standby_takes_over_after_kill_9(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    configs, folder = two_configs(tmp_path, sandbox)
    owner, standby = start_two(configs, tmp_path, processes)
    wait_for(lambda: status_role(standby) == "standby", "the standby's status.json")
    wait_for(lambda: status_role(owner) == "owner", "the owner's status.json")

    dropped: dict[str, bytes] = {}
    drop_and_wait_filed(folder, dropped, ["users-1.csv"])
    drop_and_wait_filed(folder, dropped, ["users-2.csv", "users-3.csv"])
    assert not events_named(standby, "group_owned", "file_claimed", "upload_started")
    assert status_role(standby) == "standby"
    first_batches = {r.parent.name for r in receipts(folder)}
    for batch in first_batches:  # logged just after the files moved: wait for the line
        owner.wait_event("batch_sent", batch=batch)

    owner.process.kill()  # idle: every receipt is written, the spool is empty
    owner.process.wait(timeout=30)
    standby.wait_event("group_owned", group=GROUP)
    wait_for(lambda: status_role(standby) == "owner", "the new owner's status.json")
    drop_and_wait_filed(folder, dropped, ["users-4.csv"])
    later = {r.parent.name for r in receipts(folder)} - first_batches
    assert later
    for batch in later:
        standby.wait_event("batch_sent", batch=batch)
    assert {e["batch"] for e in events_named(owner, "batch_sent")} == first_batches

    assert sent_files(folder) == {name: [content] for name, content in dropped.items()}
    uploads = uploads_by_batch(sandbox)
    assert len(sandbox.uploads()) == len(receipts(folder)), "one upload per batch"
    for receipt in receipts(folder):
        assert len(uploads.get(receipt.parent.name, [])) == 1, receipt
        assert read(receipt)["resent_after_restart"] is False
    assert standby.stop() == 0


def test_owner_standby_finishes_the_batch_the_owner_was_killed_in(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    configs, folder = two_configs(tmp_path, sandbox)
    # The owner kills itself once the server has said 200, before it records anything.
    owner = start_daemon(configs[0], tmp_path / "a.log", {crashpoints.ENV: "answered"})
    processes.append(owner)
    owner.wait_event("group_owned", group=GROUP)
    standby = start_daemon(configs[1], tmp_path / "b.log")
    processes.append(standby)
    standby.wait_event("group_standby", group=GROUP)

    content = users_csv()
    drop(folder, "users.csv", content)
    wait_for(lambda: owner.process.poll() is not None, "the owner to die after the 200")
    assert owner.process.returncode == -9
    standby.wait_event("group_owned", group=GROUP)
    [receipt] = wait_for(lambda: filed(folder), "the standby's receipt")

    batch = receipt.parent.name
    recovered = standby.wait_event("batch_recovered", batch=batch)
    assert recovered["state"] == "uploading"
    assert (receipt.parent / "users.csv").read_bytes() == content
    assert read(receipt)["resent_after_restart"] is True
    assert len(uploads_by_batch(sandbox)[batch]) == 2, "sent again: the crash came after the 200"
    assert hashlib.sha256(content).hexdigest() in {f["sha256"] for f in read(receipt)["files"]}
    assert standby.stop() == 0


def lock_is_free(folder: Path) -> bool:
    """True if this process can take the folder's owner lock (it lets go at once)."""
    fd = os.open(folder / ".dropd" / "lock", os.O_RDWR)
    try:
        for take in (fcntl.flock, fcntl.lockf):  # the two kinds do not see each other
            try:
                take(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except (BlockingIOError, PermissionError):
                return False
        return True
    finally:
        os.close(fd)


def owned(daemon: DaemonProcess, group: str) -> bool:
    return any(e.get("group") == group for e in events_named(daemon, "group_owned"))


def test_owner_reload_that_renames_the_group_never_makes_two_owners(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    configs, folder = two_configs(tmp_path, sandbox)
    first = start_daemon(configs[0], tmp_path / "a.log")
    processes.append(first)
    first.wait_event("group_owned", group=GROUP)
    other = start_daemon(configs[1], tmp_path / "b.log")
    processes.append(other)
    other.wait_event("group_standby", group=GROUP)

    # The same folder under a new key: the old group is retired, the folder changes hands.
    secret = tmp_path / "test.secret"
    renamed = {"environment": "test", "folder": str(folder), "group_name": GROUP}
    env = {"test": sandbox_environment(sandbox, "unit-a", secret)}
    toml_config(configs[0].parent, env, {"band": renamed})
    first.process.send_signal(signal.SIGHUP)
    first.wait_event("group_removed", group=GROUP)
    wait_for(lambda: owned(first, "band") or owned(other, GROUP), "a new owner of the folder")
    if not owned(other, GROUP):
        assert not lock_is_free(folder), "group band works the folder without holding its lock"

    dropped: dict[str, bytes] = {}
    drop_and_wait_filed(folder, dropped, ["users-1.csv"])
    assert not (owned(first, "band") and owned(other, GROUP)), "two owners of one folder"
    assert sent_files(folder) == {name: [content] for name, content in dropped.items()}
    assert len(sandbox.uploads()) == len(receipts(folder)) == 1
    assert other.stop() == 0 and first.stop() == 0
