"""Files for the guard's end-to-end tests: SIS-shaped CSVs with a chosen share of deletions,
and what a group folder's held/ holds."""

from __future__ import annotations

import json
import socket
import urllib.request
from pathlib import Path
from typing import Any

from harness import DaemonProcess, group_status, wait_for
from prometheus_client.parser import text_string_to_metric_families

USERS_HEADER = b"user_id,login_id,first_name,last_name,email,status\n"
ENROLLMENTS_HEADER = b"course_id,user_id,role,section_id,status\n"
SECTIONS = b"section_id,course_id,name,status\nS1,C1,Section One,active\n"


def users_csv(rows: int, deleted: int) -> bytes:
    """A valid users CSV of `rows` data rows, the first `deleted` of them deleted."""
    lines = [
        f"u{i},u{i}@example.edu,First{i},Last{i},u{i}@example.edu,"
        f"{'deleted' if i < deleted else 'active'}\n"
        for i in range(rows)
    ]
    return USERS_HEADER + "".join(lines).encode()


def enrollments_csv(rows: int, deleted: int) -> bytes:
    """A valid enrollments CSV of `rows` data rows, the first `deleted` of them deleted."""
    lines = [
        f"C{i % 7},u{i},student,S{i % 7},{'deleted' if i < deleted else 'active'}\n"
        for i in range(rows)
    ]
    return ENROLLMENTS_HEADER + "".join(lines).encode()


def held_records(folder: Path) -> list[Path]:
    """The held.json of every batch in the group folder's held/, oldest first."""
    return sorted((folder / "held").glob("*/held.json"))


def held_ids(folder: Path) -> list[str]:
    return [path.parent.name for path in held_records(folder)]


def status_of(daemon: DaemonProcess, group: str = "music", **fields: Any) -> dict[str, Any]:
    """Wait until the status file written by this very daemon shows `group` with `fields`."""
    state_dir = daemon.config.parent / "state"

    def shown() -> dict[str, Any] | None:
        assert daemon.process.poll() is None, f"dropd exited:\n{daemon.text()}"
        try:
            data = json.loads((state_dir / "status.json").read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return None
        entry = group_status(state_dir, group)
        if data.get("pid") != daemon.process.pid or entry is None:
            return None
        return entry if all(entry.get(k) == v for k, v in fields.items()) else None

    return wait_for(shown, f"status of {group} with {fields}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample at http://127.0.0.1:PORT/metrics, by name and labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
