"""A CSV large enough to be checked on two threads, seen from outside."""

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


def test_large_csv_checked_on_two_threads_keeps_its_line_numbers(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    rows = [b"C%d,u%d,student,S%d,active\n" % (n // 40, n, n // 40) for n in range(1_200_000)]
    bad = len(rows) - 5_000  # in the last stretches, which a second thread reads
    rows[bad] = b"C1,u1,tutor,S1,active\n"
    rows[bad + 1] = b"C1,u1,student,S1,deleted\n"
    data = HEADER + b"".join(rows)
    assert len(data) > 8 << 20  # csv.check.THREADED_BYTES
    config, folder = music_group(tmp_path, sandbox)
    daemon = start_ready(processes, config, tmp_path / "daemon.log")

    drop(folder, "enrollments.csv", data)
    receipt = read(wait_for(lambda: receipts(folder)[0] if receipts(folder) else None, "receipt"))

    assert errors(folder) == []
    assert receipt["files"][0]["bytes"] == len(data)
    warnings = receipt["warnings"]
    assert [(w["line"], w["file"]) for w in warnings] == [(bad + 2, "enrollments.csv")]
    assert "tutor" in warnings[0]["message"]

    daemon.process.send_signal(signal.SIGTERM)
    assert daemon.process.wait(timeout=60) == 0
    assert not any(e["event"].startswith("scan_helper") for e in daemon.events())  # threads
