"""The server's upload size limit: a sandbox that answers as Spring Boot does over its
multipart limit (`--max-upload-bytes`), met with and without `max_upload_bytes`."""

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
    start_ready,
    start_sandbox,
    wait_for,
)

SERVER_LIMIT = 2000  # the request body the sandbox takes, as a deployment's framework would
# Below the server's limit by more than the multipart form around the ZIP (about 300 bytes).
KEY = 1500


def rows(header: bytes, count: int) -> bytes:
    """A CSV of random hex fields: it compresses about 2:1."""
    fields = header.count(b",") + 1
    lines = (b",".join(secrets.token_hex(3).encode() for _ in range(fields)) for _ in range(count))
    return header + b"\n".join(lines) + b"\n"


FILES = {
    "users.csv": rows(b"user_id,login_id,first_name,last_name,email,status\n", 40),
    "courses.csv": rows(b"course_id,short_name,long_name,account_id,term_id,status\n", 40),
}


def limited_sandbox(
    tmp_path: Path, processes: list[SandboxProcess | DaemonProcess]
) -> SandboxProcess:
    box = start_sandbox(
        tmp_path / "store", ["unit-a:secret-a-1234"], "--max-upload-bytes", str(SERVER_LIMIT)
    )
    processes.append(box)
    return box


def test_a_batch_over_the_servers_limit_fails_naming_max_upload_bytes(
    tmp_path: Path, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    sandbox = limited_sandbox(tmp_path, processes)
    config, folder = music_group(tmp_path, sandbox, quiet_seconds=1.5)
    daemon = start_ready(processes, config, tmp_path / "daemon.log")
    for name, content in FILES.items():
        drop(folder, name, content)

    [error] = wait_for(lambda: errors(folder), "the refused batch's error.json")

    record = read(error)
    assert record["step"] == "upload"
    assert "too large (HTTP 413" in record["reason"], record["reason"]
    assert "max_upload_bytes" in record["reason"]
    for name, content in FILES.items():
        assert (error.parent / name).read_bytes() == content, "filed as dropped"
    assert sandbox.uploads() == []
    answered = daemon.named("upload_answered", status=413)
    assert len(answered) == 1, "failed at once, never retried"
    assert receipts(folder) == []


def test_with_max_upload_bytes_below_the_servers_limit_the_batch_goes_up_in_parts(
    tmp_path: Path, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    sandbox = limited_sandbox(tmp_path, processes)
    config, folder = music_group(tmp_path, sandbox, {"max_upload_bytes": KEY}, quiet_seconds=1.5)
    start_ready(processes, config, tmp_path / "daemon.log")
    for name, content in FILES.items():
        drop(folder, name, content)

    [receipt] = wait_for(lambda: receipts(folder), "the receipt of the cut batch")

    record = read(receipt)
    assert len(record["parts"]) == 2
    assert all(p["status"] == 200 and p["bytes"] <= KEY for p in record["parts"])
    received = []
    for upload in sandbox.uploads():
        with zipfile.ZipFile(upload / "upload.zip") as archive:
            received += [(n, archive.read(n)) for n in archive.namelist()]
    assert received == list(FILES.items())
    assert errors(folder) == []
