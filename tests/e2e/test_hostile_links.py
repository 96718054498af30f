"""A hostile drop folder: links where dropd files, moves or prunes, each in a group of its own
under one running daemon. While a link is there the group shows `Error` at step `folder`
naming it, nothing is written, filed or pruned through it, and the files wait (in the spool,
or where they were dropped); once a person removes it the batches go on, with no restart."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from harness import (
    USERS,
    DaemonProcess,
    SandboxProcess,
    drop,
    errors,
    group_status,
    read,
    receipts,
    sandbox_environment,
    start_ready,
    toml_config,
    wait_for,
    write_secret,
)

from daemon.base.crashpoints import LOSE_EVENTS_ENV, RESCAN_ENV

H_USERS = b"user_id,login_id,first_name,last_name,email,status\n"
KEEP = b"a file outside the drop folder\n"


def deleting(rows: int) -> bytes:
    """A users CSV whose every row deletes: the guard holds it."""
    lines = [f"d{i},d{i}@example.edu,D,{i},d{i}@example.edu,deleted\n" for i in range(rows)]
    return H_USERS + "".join(lines).encode()


def days_around_now() -> list[str]:
    """Today's UTC date and tomorrow's: a test that runs over midnight still meets a link."""
    now = datetime.now(UTC)
    return [now.date().isoformat(), (now + timedelta(days=1)).date().isoformat()]


def snapshot(root: Path) -> dict[str, bytes | str]:
    """Every entry under `root` (links not followed): a file's bytes, a link's target."""
    found: dict[str, bytes | str] = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            found[key] = f"-> {os.readlink(path)}"
        elif path.is_file():
            found[key] = path.read_bytes()
        else:
            found[key] = "dir"
    return found


@dataclass(frozen=True)
class Case:
    """A link (or a file) where dropd writes, what is dropped, and how a person fixes it."""

    plant: Callable[[Path, Path], None]  # (drop folder, outside folder), before dropd starts
    fix: Callable[[Path, Path], None]
    files: dict[str, bytes]
    names: tuple[str, ...]  # what the status reason must name (the path's last parts)
    outcome: str = "sent"  # once fixed: "sent", "failed" (at intake) or "held"
    waits_in: str = "spool"  # while broken: "spool" (claimed, not sent) or "top" (not taken)
    words: tuple[str, ...] = ("symbolic link",)
    extra: dict[str, object] = field(default_factory=dict)  # the group's own settings


def link(name: str, target: Callable[[Path, Path], Path]) -> Callable[[Path, Path], None]:
    def plant(folder: Path, outside: Path) -> None:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target(folder, outside), path)

    return plant


def unlink(name: str) -> Callable[[Path, Path], None]:
    def fix(folder: Path, outside: Path) -> None:
        (folder / name).unlink()

    return fix


def to_outside(folder: Path, outside: Path) -> Path:
    return outside


def dangling(folder: Path, outside: Path) -> Path:
    return outside / "nowhere"


def old_day_outside(outside: Path) -> None:
    (outside / "2020-01-01" / "20200101T000000.000000Z-0001").mkdir(parents=True)
    (outside / "2020-01-01" / "20200101T000000.000000Z-0001" / "keep.csv").write_bytes(KEEP)


def sent_is_a_fifo(folder: Path, outside: Path) -> None:
    # Not a regular file either (a file named `sent` is a dropped file like any other, and
    # fails alone at intake): dropd reads no FIFO and cannot file into one.
    os.mkfifo(folder / "sent")


def days_linked(folder: Path, outside: Path) -> None:
    (folder / "sent").mkdir()
    for day in days_around_now():
        os.symlink(outside, folder / "sent" / day)


def days_unlinked(folder: Path, outside: Path) -> None:
    for day in days_around_now():
        (folder / "sent" / day).unlink()


def lock_linked(folder: Path, outside: Path) -> None:
    (folder / ".dropd").mkdir(mode=0o700)
    (outside / "lockfile").write_bytes(KEEP)
    os.symlink(outside / "lockfile", folder / ".dropd" / "lock")


def work_linked(folder: Path, outside: Path) -> None:
    (folder / ".dropd").mkdir(mode=0o700)
    os.symlink(outside, folder / ".dropd" / "work")


CASES: dict[str, Case] = {
    "sent_links_out": Case(
        link("sent", to_outside), unlink("sent"), {"users.csv": USERS}, ("sent",)
    ),
    "sent_dangles": Case(link("sent", dangling), unlink("sent"), {"users.csv": USERS}, ("sent",)),
    "sent_is_a_fifo": Case(
        sent_is_a_fifo,
        unlink("sent"),
        {"users.csv": USERS},
        ("sent",),
        words=("not a folder",),
    ),
    "sent_day_links_out": Case(
        days_linked, days_unlinked, {"users.csv": USERS}, ("sent", days_around_now()[0])
    ),
    "failed_links_out": Case(
        link("failed", to_outside),
        unlink("failed"),
        {"notes.txt": b"not for upload\n"},
        ("failed",),
        outcome="failed",
    ),
    "held_links_out": Case(
        link("held", to_outside),
        unlink("held"),
        {"users.csv": deleting(120)},
        ("held",),
        outcome="held",
    ),
    "spool_links_out": Case(
        link(".dropd", to_outside),
        unlink(".dropd"),
        {"users.csv": USERS},
        (".dropd",),
        waits_in="top",
    ),
    "spool_dangles": Case(
        link(".dropd", dangling),
        unlink(".dropd"),
        {"users.csv": USERS},
        (".dropd",),
        waits_in="top",
    ),
    "lock_links_out": Case(
        lock_linked, unlink(".dropd/lock"), {"users.csv": USERS}, ("lock",), waits_in="top"
    ),
    "work_links_out": Case(
        work_linked, unlink(".dropd/work"), {"users.csv": USERS}, ("work",), waits_in="top"
    ),
}


def test_links_where_dropd_files_are_never_followed_and_the_group_goes_on_once_fixed(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    folders = {name: tmp_path / "drop" / name for name in CASES}
    outsides = {name: tmp_path / "outside" / name for name in CASES}
    for name, case in CASES.items():
        folders[name].mkdir(parents=True)
        outsides[name].mkdir(parents=True)
        old_day_outside(outsides[name])
        case.plant(folders[name], outsides[name])
    before = {name: snapshot(outsides[name]) for name in CASES}
    state = tmp_path / "state"
    daemon = start(tmp_path, sandbox, processes, folders, sent_retention_days=1)
    for name, case in CASES.items():
        for file_name, content in case.files.items():
            drop(folders[name], file_name, content)

    for name, case in CASES.items():
        entry = wait_for(
            lambda name=name: erring(daemon, state, name, "folder"),  # type: ignore[misc]
            f"group {name} in Error at step folder",
        )
        missing = [w for w in (*case.names, *case.words) if w not in str(entry["reason"])]
        assert not missing, f"{name}: the reason lacks {missing}: {entry['reason']}"
    for name, case in CASES.items():
        wait_for(lambda n=name, c=case: waiting(folders[n], c), f"{name}: the files to wait")  # type: ignore[misc]
    assert sandbox.uploads() == [], "nothing goes up while the folder needs a person"
    for name in CASES:
        assert snapshot(outsides[name]) == before[name], f"{name}: written through the link"
        assert not receipts(folders[name]) and not errors(folders[name]), name

    for name, case in CASES.items():
        case.fix(folders[name], outsides[name])
    for name, case in CASES.items():
        wait_for(lambda n=name, c=case: filed(folders[n], c), f"{name}: filed once fixed")  # type: ignore[misc]
        entry = wait_for(
            lambda n=name: settled(daemon, state, n),  # type: ignore[misc]
            f"{name}: status no longer Error at step folder",
        )
        assert entry["step"] != "folder", entry
        assert snapshot(outsides[name]) == before[name], f"{name}: the outside folder changed"
    assert daemon.process.poll() is None, "the daemon is alive at the end"
    assert not any(e["event"] == "sent_pruned" for e in daemon.events())


def start(
    tmp_path: Path,
    sandbox: SandboxProcess,
    processes: list[SandboxProcess | DaemonProcess],
    folders: dict[str, Path],
    env: dict[str, str] | None = None,
    **daemon: object,
) -> DaemonProcess:
    secret = write_secret(tmp_path / "test.secret", "secret-a-1234")
    groups = {
        name: {
            "environment": "test",
            "folder": str(folder),
            **(CASES[name].extra if name in CASES else {}),
        }
        for name, folder in folders.items()
    }
    config = toml_config(
        tmp_path,
        {"test": sandbox_environment(sandbox, "unit-a", secret)},
        groups,
        settle_seconds=0.3,
        quiet_seconds=0.5,
        max_wait_seconds=3,
        retry_initial_seconds=0.2,
        retry_max_seconds=1,
        **daemon,
    )
    started = start_ready(processes, config, tmp_path / "daemon.log", env)
    return started


def erring(daemon: DaemonProcess, state: Path, group: str, step: str) -> dict[str, object] | None:
    assert daemon.process.poll() is None, f"dropd exited:\n{daemon.text()}"
    entry = group_status(state, group)
    return entry if entry and entry["status"] == "Error" and entry["step"] == step else None


def settled(daemon: DaemonProcess, state: Path, group: str) -> dict[str, object] | None:
    assert daemon.process.poll() is None, f"dropd exited:\n{daemon.text()}"
    entry = group_status(state, group)
    return entry if entry and entry["step"] != "folder" else None


def spooled(folder: Path) -> set[str]:
    """The names of the files claimed into batches that wait in `.dropd/work/`."""
    work = folder / ".dropd" / "work"
    if work.is_symlink() or not work.is_dir():
        return set()
    records = {"receipt.json", "error.json", "held.json"}  # written before the move out
    return {p.name for p in work.glob("*/files/*")} - records


def waiting(folder: Path, case: Case) -> bool:
    """The case's files wait: at the top level, or claimed into a batch that is closed and
    in line (from then on a group that may send would have started its upload)."""
    if case.waits_in == "top":
        return all((folder / name).is_file() for name in case.files)
    states = {read(m)["state"] for m in (folder / ".dropd" / "work").glob("*/manifest.json")}
    return spooled(folder) == set(case.files) and states <= {"claimed", "failed"} and bool(states)


def filed(folder: Path, case: Case) -> bool:
    if case.outcome == "sent":
        found = receipts(folder)
    elif case.outcome == "failed":
        found = [e for e in errors(folder) if read(e)["step"] == "intake"]
    else:
        found = sorted((folder / "held").glob("*/held.json"))
    if not found:
        return False
    beside = {p.name for p in found[0].parent.iterdir()} - {found[0].name}
    return beside == set(case.files) and not spooled(folder)


def test_a_link_inside_an_old_sent_day_is_removed_never_followed(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    folder, outside = tmp_path / "drop" / "music", tmp_path / "outside"
    old = folder / "sent" / "2020-01-01" / "20200101T000000.000000Z-0001"
    old.mkdir(parents=True)
    (old / "users.csv").write_bytes(USERS)
    outside.mkdir()
    (outside / "keep.csv").write_bytes(KEEP)
    os.symlink(outside, old / "escape")
    os.symlink(outside, folder / "sent" / "2020-01-01" / "escape-too")
    os.symlink(outside, folder / "sent" / "2020-01-02")  # a link named like a day: not ours
    daemon = start(tmp_path, sandbox, processes, {"music": folder}, sent_retention_days=1)
    daemon.wait_event("sent_pruned", group="music")
    assert not (folder / "sent" / "2020-01-01").exists()
    assert (folder / "sent" / "2020-01-02").is_symlink()
    assert (outside / "keep.csv").read_bytes() == KEEP
    drop(folder, "users.csv", USERS)
    wait_for(lambda: receipts(folder), "a batch sent after the prune")
    assert daemon.process.poll() is None


def test_a_link_at_the_spool_while_running_is_never_written_through(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    # `.dropd` moved away and a link put in its place while dropd runs: dropd lets go of the
    # folder (its lock was in the old .dropd), cannot take it again through the link, and
    # writes nothing there; once the link is gone it takes the folder again and goes on.
    folder, outside = tmp_path / "drop" / "music", tmp_path / "outside"
    folder.mkdir(parents=True)
    outside.mkdir()
    state = tmp_path / "state"
    # Events lost, a rescan every 2 s: the swap below (microseconds) falls between two looks.
    hooks = {LOSE_EVENTS_ENV: "1", RESCAN_ENV: "2"}
    daemon = start(tmp_path, sandbox, processes, {"music": folder}, env=hooks)
    os.symlink(outside, folder / "link-to-be")
    os.rename(folder / ".dropd", tmp_path / "old-spool")
    os.rename(folder / "link-to-be", folder / ".dropd")
    entry = wait_for(lambda: erring(daemon, state, "music", "folder"), "Error at step folder")
    assert ".dropd" in str(entry["reason"])
    drop(folder, "users.csv", USERS)
    daemon.wait_event("group_folder_lost", group="music")
    assert (folder / "users.csv").is_file(), "not claimed through the link"
    assert list(outside.iterdir()) == []
    (folder / ".dropd").unlink()
    [receipt] = wait_for(lambda: receipts(folder), "the batch sent once the link is gone")
    assert json.loads(receipt.read_text())["files"][0]["name"] == "users.csv"
    assert list(outside.iterdir()) == []
    assert (folder / ".dropd" / "lock").is_file()
    assert daemon.process.poll() is None
