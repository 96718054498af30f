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

import structlog

from daemon.base.errors import DropdError
from daemon.base.folders import Folder

log = structlog.get_logger()

PRUNE_EVERY_SECONDS = 3600.0  # dated folders age by the day: once an hour is plenty


def expired_folders(sent: Folder, today: date, days: int) -> list[str]:
    """The names of the dated folders directly in `sent` older than `days` days, oldest
    first. Raises OSError if `sent` cannot be listed."""
    if days <= 0:
        return []
    oldest_kept = today - timedelta(days=days)
    with os.scandir(sent.fd) as entries:
        return sorted(
            entry.name
            for entry in entries
            # A link named like a date is never followed or removed: it is not ours.
            if (day := _folder_date(entry.name)) is not None
            and day < oldest_kept
            and entry.is_dir(follow_symlinks=False)
        )


def _folder_date(name: str) -> date | None:
    if len(name) != 10:
        return None
    try:
        return date.fromisoformat(name)
    except ValueError:
        return None


def prune_sent(group: str, root: Folder, today: date, days: int) -> int:
    """Remove the expired dated folders under the drop folder's `sent/`, logging each;
    returns how many went. `sent/` is opened without following a link, and each folder is
    removed through descriptors (a link inside is removed, never followed)."""
    try:
        sent = root.find("sent")
    except DropdError as exc:
        log.warning("sent_prune_refused", group=group, reason=str(exc))
        return 0
    if sent is None:
        return 0
    with sent:
        try:
            expired = expired_folders(sent, today, days)
        except OSError as exc:
            log.warning("sent_prune_failed", group=group, path=str(sent.shown), reason=exc.strerror)
            return 0
        return sum(_remove(group, sent, name, days) for name in expired)


def _remove(group: str, sent: Folder, name: str, days: int) -> int:
    batches = _count_batches(sent, name)
    try:
        shutil.rmtree(name, dir_fd=sent.fd)
    except OSError as exc:
        log.warning(
            "sent_prune_failed", group=group, path=str(sent.shown / name), reason=exc.strerror
        )
        return 0
    log.info("sent_pruned", group=group, folder=str(sent.shown / name), batches=batches, days=days)
    return 1


def _count_batches(sent: Folder, name: str) -> int:
    try:
        with sent.sub(name) as dated, os.scandir(dated.fd) as entries:
            return sum(1 for entry in entries if entry.is_dir(follow_symlinks=False))
    except (OSError, DropdError):
        return 0


class Pruner:
    """Runs `prune_sent` for each drop folder it is given, once an hour each."""

    def __init__(self, wall: Callable[[], datetime]) -> None:
        self.wall = wall
        self._next: dict[str, float] = {}

    def run(self, folders: Iterable[tuple[str, Folder]], now: float, days: int) -> None:
        """Prune the folders (a group's key, its drop folder as held) whose hour has come;
        nothing at all while `days` is 0. The caller leaves out a folder that needs a
        person: nothing is pruned there then."""
        if days <= 0:
            return
        for key, root in folders:
            if now < self._next.get(key, 0.0):
                continue
            self._next[key] = now + PRUNE_EVERY_SECONDS
            prune_sent(key, root, self.wall().date(), days)
