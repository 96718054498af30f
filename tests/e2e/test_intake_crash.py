"""Rules 2 and 6 at intake: the kind of every file, and the verdict on a file dropd does not
upload, are in the spool before the file is claimed. A `kill -9` at any moment of intake
(crash points `intended` and `claimed`) cannot change what becomes of a file: after a
restart a `report.pdf` still fails alone at step `intake` and never goes up, a ready-made
ZIP still goes up as it came, a CSV still goes up; each is filed exactly once."""

from __future__ import annotations

import signal
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from harness import (
    DEADLINE,
    USERS,
    DaemonProcess,
    SandboxProcess,
    drained,
    drop,
    errors,
    music_group,
    read,
    receipts,
    start_daemon,
    start_ready,
    wait_for,
    zipped,
)

from daemon.base import crashpoints

Processes = list[SandboxProcess | DaemonProcess]


@dataclass(frozen=True)
class Kind:
    """A file to drop, the kind intake must record for it, and where it must end."""

    name: str
    content: bytes
    kind: str  # as `files[].kind` in the manifest
    ends: str  # "sent" or "failed"


PDF = Kind("report.pdf", b"%PDF-1.4\n% not a file dropd uploads\n%%EOF\n", "other", "failed")
ZIP = Kind("export.zip", zipped({"users.csv": USERS}), "zip", "sent")
CSV = Kind("users.csv", USERS, "csv", "sent")
KINDS = {k.name: k for k in (PDF, ZIP, CSV)}


# -- helpers ------------------------------------------------------------------------------


def work_batches(folder: Path) -> list[Path]:
    work = folder / ".dropd" / "work"
    return sorted(p for p in work.iterdir() if not p.name.startswith(".")) if work.is_dir() else []


def names_in(folder: Path) -> dict[str, bytes]:
    """The regular files directly in `folder`, by name ({} if there is no such folder)."""
    if not folder.is_dir():
        return {}
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def filed(folder: Path) -> list[tuple[str, str, Path]]:
    """Every dropped file filed under sent/ or failed/: (where, name, its batch folder);
    the records left out."""
    found = [
        ("sent", p.name, p.parent)
        for p in (folder / "sent").glob("*/*/*")
        if p.name != "receipt.json"
    ]
    found += [
        ("failed", p.name, p.parent)
        for p in (folder / "failed").glob("*/*")
        if p.name != "error.json"
    ]
    return sorted(found)


def everywhere(folder: Path) -> Counter[str]:
    """How many copies of each dropped name are anywhere in the group's folder: the top
    level, a batch of the spool, sent/, failed/."""
    copies: Counter[str] = Counter(list(names_in(folder)))
    for batch in work_batches(folder):
        copies.update(list(names_in(batch / "files")))
    copies.update(name for _, name, _ in filed(folder))
    return copies


def wait_killed(
    daemon: DaemonProcess,
    point: str,
    folder: Path,
    sandbox: SandboxProcess,
    failed_before: bool = False,
) -> None:
    """Wait for the daemon to kill itself at `point`; fail at once if it went past the point
    (a batch filed, an upload made) without dying. With `failed_before`, a file refused at
    intake may be filed in failed/ before the point (its claim came first)."""

    def dead() -> bool:
        if daemon.process.poll() is not None:
            return True
        refused = [] if failed_before else errors(folder)
        went_past = receipts(folder) or refused or sandbox.uploads()
        assert not went_past, (
            f"dropd went past crash point {point!r} without the kill: it filed or sent "
            f"{[str(p) for p in [*receipts(folder), *errors(folder), *sandbox.uploads()]]}\n"
            f"{daemon.text()}"
        )
        return False

    wait_for(dead, f"dropd to kill itself at {point}", DEADLINE)
    assert daemon.process.returncode == -signal.SIGKILL, (
        f"dropd exited {daemon.process.returncode}, not killed at {point}:\n{daemon.text()}"
    )


def manifest_entries(folder: Path) -> dict[str, tuple[Path, dict[str, Any], dict[str, Any]]]:
    """Each file a manifest of the spool lists: its batch, the manifest, the file's entry."""
    listed: dict[str, tuple[Path, dict[str, Any], dict[str, Any]]] = {}
    for batch in work_batches(folder):
        manifest = read(batch / "manifest.json")
        for entry in manifest["files"]:
            assert entry["name"] not in listed, f"{entry['name']} is listed by two batches"
            listed[entry["name"]] = (batch, manifest, entry)
    return listed


def check_intake_record(folder: Path, kind: Kind) -> Path:
    """The file is listed, with its kind, by a batch of its own that is still open (with the
    verdict for a file dropd does not upload); returns the batch folder."""
    listed = manifest_entries(folder)
    assert kind.name in listed, f"no manifest lists {kind.name}: {sorted(listed)}"
    batch, manifest, entry = listed[kind.name]
    assert manifest["state"] == "open", manifest
    assert entry["kind"] == kind.kind, entry
    assert entry["bytes"] == len(kind.content), entry
    if kind is PDF:
        assert [f["name"] for f in manifest["files"]] == [kind.name], "a batch of its own"
        assert isinstance(manifest["refused"], str) and manifest["refused"], manifest
        assert kind.name in manifest["refused"], manifest["refused"]
    else:
        assert manifest["refused"] is None, manifest
    if kind is ZIP:
        assert [f["name"] for f in manifest["files"]] == [kind.name], "a batch of its own"
    return batch


def wait_settled(daemon: DaemonProcess, folder: Path, names: list[str]) -> None:
    """Wait until each name is filed and the drop folder and the spool are empty."""

    def done() -> bool:
        assert daemon.process.poll() is None, f"dropd exited:\n{daemon.text()}"
        return sorted(name for _, name, _ in filed(folder)) == sorted(names) and drained(folder)

    wait_for(done, f"{names} filed in sent/ or failed/ with the spool empty")


def check_ended(folder: Path, kind: Kind) -> Path:
    """The file is where its kind sends it, once, with the right record; returns its batch
    folder under sent/ or failed/."""
    [(where, _, home)] = [f for f in filed(folder) if f[1] == kind.name]
    assert where == kind.ends, f"{kind.name} ended in {where}/, not {kind.ends}/: {home}"
    assert names_in(home)[kind.name] == kind.content, f"{home / kind.name} is not as dropped"
    if kind is PDF:
        assert sorted(names_in(home)) == ["error.json", PDF.name], "alone in failed/BATCH/"
        error = read(home / "error.json")
        assert error["step"] == "intake", error
        assert PDF.name in error["reason"], error
    else:
        assert home.parent.parent.name == "sent", home
        receipt = read(home / "receipt.json")
        assert receipt["status"] == 200, receipt
        assert receipt["batch"] == home.name, receipt
    return home


def uploads_of(sandbox: SandboxProcess, home: Path) -> list[Path]:
    """The sandbox's uploads of the batch filed in `home`."""
    return [
        u
        for u in sandbox.uploads()
        if any(p["filename"].startswith(home.name) for p in sandbox.request(u)["parts"])
    ]


# -- 1. one file of each kind, killed at each moment of intake ------------------------------


@pytest.mark.parametrize("name", list(KINDS))
@pytest.mark.parametrize("point", ["intended", "claimed"])
def test_intake_crash_cannot_change_what_becomes_of_a_file(
    point: str, name: str, tmp_path: Path, sandbox: SandboxProcess, processes: Processes
) -> None:
    kind = KINDS[name]
    config, folder = music_group(tmp_path, sandbox)
    crashed = start_ready(processes, config, tmp_path / "crashed.log", {crashpoints.ENV: point})
    drop(folder, kind.name, kind.content)
    wait_killed(crashed, point, folder, sandbox)

    # What the disk holds at the kill: the file and its kind (and verdict) are recorded.
    batch = check_intake_record(folder, kind)
    [only] = work_batches(folder)
    assert only == batch, "one batch in the spool"
    if point == "intended":
        assert names_in(folder) == {kind.name: kind.content}, "not claimed yet: still on top"
        assert names_in(batch / "files") == {}, "the kill came before the rename"
    else:
        assert names_in(folder) == {}, "claimed: gone from the top level"
        assert names_in(batch / "files") == {kind.name: kind.content}
    assert filed(folder) == []
    assert sandbox.uploads() == []

    daemon = start_daemon(config, tmp_path / "restarted.log", {crashpoints.ENV: ""})
    processes.append(daemon)
    wait_settled(daemon, folder, [kind.name])
    home = check_ended(folder, kind)
    if point == "claimed":
        assert home.name == batch.name, "the batch the kill left is the one finished"
    if kind is PDF:
        time.sleep(1.0)  # anything on its way to the sandbox would be there by now
        assert sandbox.uploads() == [], "a file that failed at intake never goes up"
    else:
        [upload] = uploads_of(sandbox, home)
        assert sandbox.uploads() == [upload], "one upload, once"
        if kind is ZIP:
            # dropd's own ZIP of the files in it (the dropped one is filed as it came).
            assert (upload / "upload.zip").read_bytes() != ZIP.content, "zipped again"
        received = {
            f["name"]: (upload / f["stored_as"]).read_bytes()
            for f in sandbox.request(upload)["files"]
        }
        assert received == {"users.csv": USERS}

    assert everywhere(folder) == Counter({kind.name: 1}), "filed exactly once, nothing else"
    assert names_in(folder) == {}
    assert work_batches(folder) == []
    assert daemon.process.poll() is None, f"dropd exited:\n{daemon.text()}"
    assert daemon.stop() == 0, daemon.text()


# -- 2. a pdf and a CSV dropped together, killed after the first or the second claim --------


@pytest.mark.parametrize("point", ["claimed", "claimed:2"])
def test_intake_crash_with_a_pdf_and_a_csv_together(
    point: str, tmp_path: Path, sandbox: SandboxProcess, processes: Processes
) -> None:
    config, folder = music_group(tmp_path, sandbox)
    # Dropped before the start, so that one scan finds both ready together.
    for kind in (PDF, CSV):
        drop(folder, kind.name, kind.content)
    crashed = start_daemon(config, tmp_path / "crashed.log", {crashpoints.ENV: point})
    processes.append(crashed)
    wait_killed(crashed, point, folder, sandbox, failed_before=point == "claimed:2")

    # At the kill each file is in one place; where it is in the spool, its kind (and for the
    # pdf its verdict) is recorded; only the pdf may have been filed, and only in failed/.
    assert everywhere(folder) == Counter({PDF.name: 1, CSV.name: 1}), everywhere(folder)
    listed = manifest_entries(folder)
    for kind in (PDF, CSV):
        spooled = any(kind.name in names_in(b / "files") for b in work_batches(folder))
        if spooled or kind.name in listed:
            check_intake_record(folder, kind)
    assert [(w, n) for w, n, _ in filed(folder)] in ([], [("failed", PDF.name)])
    claims = sum(len(names_in(b / "files")) for b in work_batches(folder)) + len(filed(folder))
    assert claims == int(point.partition(":")[2] or 1), "killed after that many claims"
    assert sandbox.uploads() == []

    daemon = start_daemon(config, tmp_path / "restarted.log", {crashpoints.ENV: ""})
    processes.append(daemon)
    wait_settled(daemon, folder, [PDF.name, CSV.name])
    check_ended(folder, PDF)
    home = check_ended(folder, CSV)
    time.sleep(1.0)  # anything else on its way to the sandbox would be there by now
    [upload] = uploads_of(sandbox, home)
    assert sandbox.uploads() == [upload], "the CSV's batch went up once, nothing else did"
    received = {
        f["name"]: (upload / f["stored_as"]).read_bytes() for f in sandbox.request(upload)["files"]
    }
    assert received == {CSV.name: CSV.content}, "the pdf never went up"

    assert everywhere(folder) == Counter({PDF.name: 1, CSV.name: 1})
    assert names_in(folder) == {}
    assert work_batches(folder) == []
    assert daemon.process.poll() is None, f"dropd exited:\n{daemon.text()}"
    assert daemon.stop() == 0, daemon.text()
