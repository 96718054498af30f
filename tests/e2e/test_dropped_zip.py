"""A dropped ZIP against the real daemon and sandbox: unpacked into its batch by base name,
macOS's own files left out, checked and zipped again as loose files are; the ZIP itself is
filed as it came, and a kill -9 on its way loses nothing."""

from __future__ import annotations

import io
import signal
import zipfile
from pathlib import Path

import pytest
from harness import (
    COURSES,
    DEADLINE,
    USERS,
    DaemonProcess,
    SandboxProcess,
    drained,
    drop,
    music_group,
    read,
    receipts,
    start_daemon,
    start_ready,
    wait_for,
)

from daemon.base import crashpoints

Processes = list[SandboxProcess | DaemonProcess]


def macos_compressed() -> bytes:
    """What a Mac's "Compress" makes of a folder `export` holding two CSVs: a folder entry,
    the files, their AppleDouble twins under `__MACOSX/`, and the Finder's `.DS_Store`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("export/", b"")
        archive.writestr("export/users.csv", USERS)
        archive.writestr("export/courses.csv", COURSES)
        archive.writestr("export/.DS_Store", b"\0\0\0\1Bud1" + bytes(100))
        archive.writestr("__MACOSX/", b"")
        archive.writestr("__MACOSX/export/", b"")
        archive.writestr("__MACOSX/export/._users.csv", b"\0\5\26\7\0\2\0\0Mac OS X")
        archive.writestr("__MACOSX/export/._courses.csv", b"\0\5\26\7\0\2\0\0Mac OS X")
    return buffer.getvalue()


LEFT_OUT = ["export/.DS_Store", "__MACOSX/export/._users.csv", "__MACOSX/export/._courses.csv"]


def uploaded(sandbox: SandboxProcess) -> list[dict[str, bytes]]:
    """The entries of each ZIP the sandbox took, in arrival order."""
    found = []
    for upload in sandbox.uploads():
        with zipfile.ZipFile(upload / "upload.zip") as archive:
            assert archive.testzip() is None
            found.append({name: archive.read(name) for name in archive.namelist()})
    return found


def wait_sent(daemon: DaemonProcess, folder: Path) -> Path:
    """Wait for the one batch's receipt, with the spool empty; returns the receipt."""

    def sent() -> Path | None:
        assert daemon.process.poll() is None, f"dropd exited:\n{daemon.text()}"
        found = receipts(folder)
        return found[0] if found and drained(folder) else None

    return wait_for(sent, "the ZIP's batch filed in sent/")


def check_sent(folder: Path, sandbox: SandboxProcess, receipt: Path, original: bytes) -> None:
    """The sandbox took dropd's ZIP of the base-named CSVs, once; sent/ holds the ZIP as
    dropped and a receipt that lists what was taken and left out."""
    assert uploaded(sandbox) == [{"users.csv": USERS, "courses.csv": COURSES}]
    assert sorted(p.name for p in receipt.parent.iterdir()) == ["export.zip", "receipt.json"]
    assert (receipt.parent / "export.zip").read_bytes() == original
    record = read(receipt)
    assert [(f["name"], f["kind"]) for f in record["files"]] == [("export.zip", "zip")]
    assert record["unpacked"] == {
        "from": "export.zip",
        "entries": [
            {"entry": "export/users.csv", "name": "users.csv", "bytes": len(USERS)},
            {"entry": "export/courses.csv", "name": "courses.csv", "bytes": len(COURSES)},
        ],
        "left_out": LEFT_OUT,
    }
    assert record["parts"][0]["files"] == ["users.csv", "courses.csv"]


def test_a_macos_zip_goes_up_as_dropds_zip_of_its_csvs(
    tmp_path: Path, sandbox: SandboxProcess, processes: Processes
) -> None:
    config, folder = music_group(tmp_path, sandbox)
    daemon = start_ready(processes, config, tmp_path / "daemon.log")
    original = macos_compressed()
    drop(folder, "export.zip", original)
    receipt = wait_sent(daemon, folder)
    check_sent(folder, sandbox, receipt, original)
    assert daemon.stop() == 0


def test_a_dropped_zip_with_a_wrong_header_fails_at_validate(
    tmp_path: Path, sandbox: SandboxProcess, processes: Processes
) -> None:
    config, folder = music_group(tmp_path, sandbox)
    daemon = start_ready(processes, config, tmp_path / "daemon.log")
    wrong = USERS.replace(b"login_id", b"login")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("export/users.csv", wrong)
    drop(folder, "export.zip", buffer.getvalue())
    error = wait_for(lambda: next((folder / "failed").glob("*/error.json"), None), "error.json")
    record = read(error)
    assert record["step"] == "validate"
    assert record["problems"][0]["file"] == "users.csv"
    assert record["problems"][0]["line"] == 1
    assert (error.parent / "export.zip").read_bytes() == buffer.getvalue()
    assert sandbox.uploads() == []
    assert daemon.stop() == 0


@pytest.mark.parametrize("point", ["closed", "zipped"])
def test_a_kill_while_a_dropped_zip_is_packed_loses_nothing(
    point: str, tmp_path: Path, sandbox: SandboxProcess, processes: Processes
) -> None:
    # `closed`: before packing (with what a kill in mid-unpacking leaves: part of unpacked/);
    # `zipped`: after it. Either way the restart sends the files once and files the ZIP.
    config, folder = music_group(tmp_path, sandbox)
    original = macos_compressed()
    drop(folder, "export.zip", original)
    crashed = start_daemon(config, tmp_path / "crashed.log", {crashpoints.ENV: point})
    processes.append(crashed)
    code = crashed.process.wait(timeout=DEADLINE)
    assert code == -signal.SIGKILL, f"dropd exited {code}, not at {point}:\n{crashed.text()}"
    [batch] = (folder / ".dropd" / "work").iterdir()
    assert (batch / "files" / "export.zip").read_bytes() == original
    if point == "closed":
        half = batch / "unpacked"
        half.mkdir()
        (half / "users.csv").write_bytes(USERS[:20])
        (half / "stray.csv").write_bytes(b"from a kill mid-unpacking")
    else:
        assert not (batch / "unpacked").exists(), "unpacked/ lives only while packing"
    assert sandbox.uploads() == []

    daemon = start_daemon(config, tmp_path / "restarted.log", {crashpoints.ENV: ""})
    processes.append(daemon)
    receipt = wait_sent(daemon, folder)
    check_sent(folder, sandbox, receipt, original)
    assert daemon.stop() == 0
