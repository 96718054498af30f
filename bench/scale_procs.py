"""What the scale benchmark reads from a running `dropd run`: its log as it grows, its CPU
time, threads, open files and memory from `/proc`, and a config of many groups.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from procs import KIB, Periodic, Sandbox, proc_field

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process `pid` (all its threads), in seconds."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()  # the name may hold spaces and parentheses
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def threads(pid: int) -> int:
    return proc_field(pid, "Threads") or 0


def open_fds(pid: int) -> int:
    """How many file descriptors process `pid` holds now."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def mib(pid: int, name: str) -> float:
    """`VmRSS` or `VmHWM` of `pid` in MiB (0 if it is gone)."""
    return (proc_field(pid, name) or 0) / KIB


def epoch(event: dict[str, Any]) -> float:
    """An event's `timestamp` (ISO 8601, UTC) as epoch seconds."""
    return datetime.fromisoformat(str(event["timestamp"])).timestamp()


@dataclass
class LogTail:
    """The JSON events of a log file that grows, read from where the last call stopped."""

    path: Path
    _offset: int = 0
    _partial: bytes = b""

    def new_events(self) -> list[dict[str, Any]]:
        with open(self.path, "rb") as log:
            log.seek(self._offset)
            chunk = log.read()
        self._offset += len(chunk)
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        events = []
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                events.append(event)
        return events


@dataclass
class ResourceSampler(Periodic):
    """Samples a process's open descriptors and RSS every `interval` seconds, in a thread."""

    pid: int
    interval: float = 0.05
    peak_fds: int = 0
    peak_rss_mib: float = 0.0
    samples: int = 0

    def sample(self) -> None:
        self.peak_fds = max(self.peak_fds, open_fds(self.pid))
        self.peak_rss_mib = max(self.peak_rss_mib, mib(self.pid, "VmRSS"))
        self.samples += 1


def write_many_groups(
    root: Path, sandbox: Sandbox, folders: dict[str, Path], daemon: dict[str, Any]
) -> Path:
    """A config with one `[groups.KEY]` table per folder, all on one environment."""
    secret = root / "bench.secret"
    secret.write_text(sandbox.secret + "\n", encoding="utf-8")
    secret.chmod(0o600)
    lines = ["[daemon]", f"state_dir = {json.dumps(str(root / 'state'))}"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in daemon.items()]
    lines += [
        "",
        "[environments.sandbox]",
        f"token_url = {json.dumps(sandbox.url + '/oauth/token')}",
        f"base_url = {json.dumps(sandbox.url)}",
        f"client_id = {json.dumps(sandbox.client_id)}",
        f"client_secret_file = {json.dumps(str(secret))}",
    ]
    for key, folder in folders.items():
        lines += [
            "",
            f"[groups.{key}]",
            'environment = "sandbox"',
            f"folder = {json.dumps(str(folder))}",
        ]
    path = root / "dropd.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
