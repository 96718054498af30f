"""Is the dropd that wrote a status file still running? Told from its pid and start time.

The daemon writes its pid and its start time in clock ticks (`/proc/PID/stat`, field 22) into
`status.json`. A pid alone is not enough: after a restart or a reboot the number may belong
to another process. The pair is: the kernel never gives one pid to two processes started in
the same tick.
"""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")


def start_ticks(pid: int, proc: Path = PROC) -> int | None:
    """When process `pid` started, in clock ticks after boot; None if it cannot be read."""
    try:
        stat = (proc / str(pid) / "stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces or ")": cut after the
    # last one. Field 22 (starttime) is then the 20th field.
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def is_running(pid: int, ticks: int | None, proc: Path = PROC) -> bool:
    """True while the process `pid` that started at `ticks` (None: not known) is alive."""
    if pid <= 0:
        return False
    now = start_ticks(pid, proc)
    if now is not None and ticks is not None:
        return now == ticks
    # No /proc here, or it hides other users' processes (hidepid): ask the kernel.
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, and belongs to another user (dropd's, when we are not)
    return True
