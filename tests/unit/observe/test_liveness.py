"""Is the dropd that wrote a status file still running (daemon/observe/liveness.py)?"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from daemon.observe import liveness

_OUT: dict[str, Any] = {"capture_output": True, "text": True, "check": True}


def test_liveness_this_process_runs() -> None:
    ticks = liveness.start_ticks(os.getpid())
    assert isinstance(ticks, int)
    assert liveness.is_running(os.getpid(), ticks)
    assert not liveness.is_running(os.getpid(), ticks + 1), "another process, same pid"


def test_liveness_a_finished_process_does_not_run() -> None:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], **_OUT)
    assert not liveness.is_running(int(child.stdout), None)
    assert not liveness.is_running(0, None)


def test_liveness_another_users_process_runs_where_proc_is_hidden(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(pid: int, signal: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "kill", refused)
    assert liveness.is_running(4242, 123, proc=tmp_path)  # an empty /proc: hidepid


def test_liveness_start_ticks_reads_past_a_command_name_with_parentheses(tmp_path: Path) -> None:
    (tmp_path / "77").mkdir()
    fields = " ".join(str(n) for n in range(3, 22))
    (tmp_path / "77" / "stat").write_text(f"77 (a) b) c) {fields} 9999 rest of it\n")
    assert liveness.start_ticks(77, tmp_path) == 9999
