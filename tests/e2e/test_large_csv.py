"""A CSV large enough to be checked on both cores: the helper process, seen from outside."""

from __future__ import annotations

import signal
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
    wait_for,
)

HEADER = b"course_id,user_id,role,section_id,status\n"


def gone(pid: int) -> bool:
    """True once `pid` has exited (a zombie waiting for its new parent counts)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def test_large_csv_checked_with_the_helper_keeps_its_line_numbers(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    rows = [b"C%d,u%d,student,S%d,active\n" % (n // 40, n, n // 40) for n in range(1_200_000)]
    bad = len(rows) - 5_000  # in the last stretches, which the helper reads first
    rows[bad] = b"C1,u1,tutor,S1,active\n"
    rows[bad + 1] = b"C1,u1,student,S1,deleted\n"
    data = HEADER + b"".join(rows)
    assert len(data) > 32 << 20  # csvsplit.SPLIT_MIN_BYTES
    config, folder = music_group(tmp_path, sandbox)
    daemon = start_ready(processes, config, tmp_path / "daemon.log")

    drop(folder, "enrollments.csv", data)
    started = daemon.wait_event("scan_helper_started")
    receipt = read(wait_for(lambda: receipts(folder)[0] if receipts(folder) else None, "receipt"))

    assert errors(folder) == []
    assert receipt["files"][0]["bytes"] == len(data)
    warnings = receipt["warnings"]
    assert [(w["line"], w["file"]) for w in warnings] == [(bad + 2, "enrollments.csv")]
    assert "tutor" in warnings[0]["message"]
    helper = started["pid"]
    assert not gone(helper)  # kept for the next large file

    daemon.process.send_signal(signal.SIGTERM)
    assert daemon.process.wait(timeout=60) == 0
    wait_for(lambda: gone(helper), "the helper to end with the daemon")
    assert not any(e["event"] == "scan_helper_failed" for e in daemon.events())
