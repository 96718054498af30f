"""The status file the daemon keeps (daemon/observe/status.py)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from daemon.observe import liveness
from daemon.observe.status import REFRESH_SECONDS, STATUS_FILE, StatusWriter

NOW = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)


def test_status_writer_names_its_process_and_refreshes(tmp_path: Path) -> None:
    writer = StatusWriter(tmp_path, started=NOW)
    writer.write([], NOW)
    data = json.loads((tmp_path / STATUS_FILE).read_text())
    assert data["pid"] == os.getpid()
    assert data["pid_start_ticks"] == liveness.start_ticks(os.getpid())
    assert data["updated"] == "2026-11-23T10:00:00.000Z" and data["groups"] == []
    assert data["started"] == "2026-11-23T10:00:00.000Z"

    (tmp_path / STATUS_FILE).unlink()
    writer.write([], NOW + timedelta(seconds=1))
    assert not (tmp_path / STATUS_FILE).exists(), "nothing changed, no refresh due"
    writer.write([], NOW + timedelta(seconds=REFRESH_SECONDS))
    assert json.loads((tmp_path / STATUS_FILE).read_text())["updated"].startswith("2026-11-23")
