"""`max_upload_bytes`: a large batch goes up as several ZIPs in the server's order."""

from __future__ import annotations

import secrets
import zipfile
from pathlib import Path

from harness import (
    DaemonProcess,
    SandboxProcess,
    drop,
    errors,
    music_group,
    read,
    receipts,
    start_daemon,
    start_ready,
    wait_for,
)

LIMIT = 6000


def rows(header: bytes, count: int, width: int = 3) -> bytes:
    """A CSV whose rows are random hex (it compresses about 2:1)."""
    fields = header.count(b",") + 1
    body = b"".join(
        b",".join(secrets.token_hex(width).encode() for _ in range(fields)) + b"\n"
        for _ in range(count)
    )
    return header + body


def test_parts_go_up_in_server_order_each_under_the_limit(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    config, folder = music_group(tmp_path, sandbox, {"max_upload_bytes": LIMIT}, quiet_seconds=1.5)
    start_ready(processes, config, tmp_path / "daemon.log")
    files = {
        "z-enrollments.csv": rows(b"course_id,user_id,role,section_id,status\n", 90),
        "y-sections.csv": rows(b"section_id,course_id,name,status\n", 90),
        "x-courses.csv": rows(b"course_id,short_name,long_name,account_id,term_id,status\n", 60),
        "w-users.csv": rows(b"user_id,login_id,first_name,last_name,email,status\n", 60),
        "message.properties": b"sender=a@example.edu\nsubject=Hi\nbody=Welcome\n",
    }
    for name, content in files.items():
        drop(folder, name, content)
    [receipt] = wait_for(lambda: receipts(folder), "the receipt of the cut batch")

    uploads = sandbox.uploads()
    assert len(uploads) >= 2, "the batch was cut"
    received: list[str] = []
    for upload in uploads:
        assert (upload / "upload.zip").stat().st_size <= LIMIT
        with zipfile.ZipFile(upload / "upload.zip") as archive:
            names = archive.namelist()
            for name in names:
                assert archive.read(name) == files[name]
        received += names
        custom = sandbox.request(upload)["form"].get("customUsersNotification") == "true"
        assert custom is ("message.properties" in names)
    assert received == [
        "w-users.csv",
        "message.properties",
        "x-courses.csv",
        "y-sections.csv",
        "z-enrollments.csv",
    ]
    record = read(receipt)
    assert [p["number"] for p in record["parts"]] == list(range(1, len(uploads) + 1))
    assert all(p["status"] == 200 and p["bytes"] <= LIMIT for p in record["parts"])
    assert [n for p in record["parts"] for n in p["files"]] == received


def test_parts_a_file_too_big_for_one_upload_fails_with_the_reason(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    config, folder = music_group(tmp_path, sandbox, {"max_upload_bytes": LIMIT}, quiet_seconds=1.5)
    daemon = start_daemon(config, tmp_path / "daemon.log")
    processes.append(daemon)
    big = rows(b"user_id,login_id,first_name,last_name,email,status\n", 400)
    drop(folder, "users.csv", big)
    [error] = wait_for(lambda: errors(folder), "the oversize batch's error.json")
    record = read(error)
    assert record["step"] == "zip"
    assert "users.csv" in record["reason"] and "max_upload_bytes" in record["reason"]
    assert (error.parent / "users.csv").read_bytes() == big
    assert sandbox.uploads() == []
