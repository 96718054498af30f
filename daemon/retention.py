"""`sent_retention_days`: prune dated folders under `sent/` once they are older than that.

The only thing dropd ever deletes, and only when a sysadmin turns it on: `sent/YYYY-MM-DD/`
folders (named by UTC date) whose date is more than N days before today. Anything else under
`sent/` (a folder a person made, a link, a file) is left alone.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from daemon.groups import GroupWorker

log = structlog.get_logger()

PRUNE_EVERY_SECONDS = 3600.0  # dated folders age by the day: once an hour is plenty


def expired_folders(sent: Path, today: date, days: int) -> list[Path]:
    """The dated folders directly under `sent` older than `days` days, oldest first.

    Raises OSError if `sent` exists but cannot be listed.
    """
    if days <= 0:
        return []
    oldest_kept = today - timedelta(days=days)
    try:
        entries = list(os.scandir(sent))
    except FileNotFoundError:
        return []
    expired = []
    for entry in entries:
        day = _folder_date(entry.name)
        # A link named like a date is never followed or removed: it is not ours.
        if day is not None and day < oldest_kept and entry.is_dir(follow_symlinks=False):
            expired.append(Path(entry.path))
    return sorted(expired)


def _folder_date(name: str) -> date | None:
    if len(name) != 10:
        return None
    try:
        return date.fromisoformat(name)
    except ValueError:
        return None


def prune_sent(group: str, sent: Path, today: date, days: int) -> int:
    """Remove the expired dated folders under `sent`, logging each; returns how many went."""
    try:
        expired = expired_folders(sent, today, days)
    except OSError as exc:
        log.warning("sent_prune_failed", group=group, path=str(sent), reason=exc.strerror)
        return 0
    removed = 0
    for folder in expired:
        batches = _count_batches(folder)
        try:
            shutil.rmtree(folder)
        except OSError as exc:
            log.warning("sent_prune_failed", group=group, path=str(folder), reason=exc.strerror)
            continue
        removed += 1
        log.info("sent_pruned", group=group, folder=str(folder), batches=batches, days=days)
    return removed


def _count_batches(folder: Path) -> int:
    try:
        return sum(1 for entry in os.scandir(folder) if entry.is_dir(follow_symlinks=False))
    except OSError:
        return 0


class Pruner:
    """Runs `prune_sent` for every group that owns its folder, once an hour each."""

    def __init__(self, wall: Callable[[], datetime]) -> None:
        self.wall = wall
        self._next: dict[str, float] = {}

    def run(self, workers: Iterable[GroupWorker], now: float, days: int) -> None:
        """Prune the groups whose hour has come (nothing at all while `days` is 0)."""
        if days <= 0:
            return
        for worker in workers:
            key = worker.group.key
            if not worker.owner or now < self._next.get(key, 0.0):
                continue
            self._next[key] = now + PRUNE_EVERY_SECONDS
            prune_sent(key, worker.group.folder / "sent", self.wall().date(), days)
