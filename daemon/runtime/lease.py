"""A group's hold on its folder: the owner lock (or standing by while another dropd has it),
the watch on the folder and its spool, noticing the folder cannot be read, and letting go
of a folder that is no longer the group's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import structlog

from daemon.base.errors import FolderError, SpoolError
from daemon.base.steps import Step
from daemon.intake.watch import FolderWatcher
from daemon.runtime.health import GroupHealth
from daemon.spool.store import SPOOL_DIR, Spool

log = structlog.get_logger()

STANDBY_RETRY_SECONDS = 2.0  # how often a standby dropd tries the owner lock


@dataclass(eq=False)
class FolderLease:
    """Whether this dropd owns a group's folder, and the watch on it while it does."""

    key: str
    folder: Path
    spool: Spool
    health: GroupHealth
    watcher: FolderWatcher | None = None
    owner: bool = False
    standby_logged: bool = False
    next_try: float = 0.0  # while standing by: when the lock is tried again
    losing: str | None = None  # why the folder held is no longer the group's, until let go

    def due(self, now: float) -> bool:
        """True when the lock may be tried now (a standby tries every few seconds)."""
        return now >= self.next_try

    def watch_with(self, watcher: FolderWatcher | None) -> None:
        """Watch with `watcher` from now on (None: the group is polled)."""
        self.watcher = watcher

    def take(self, now: float) -> bool:
        """Take the folder's lock; stand by (False) if another dropd has it. Raises
        SpoolError or OSError if the folder cannot be locked (then `refused`)."""
        self.next_try = now + STANDBY_RETRY_SECONDS
        if not self.spool.try_lock():
            self.spool.unlock()  # hold nothing of a folder another dropd works
            self._standby()
            return False
        self.owner = True
        return True

    def refused(self, exc: BaseException) -> None:
        """The folder could not be taken (or its spool recovered): say why, in Error."""
        if not self.owner:
            self.spool.unlock()
        self.health.set_error(Step.FOLDER, _folder_reason(self.folder, exc))

    def _standby(self) -> None:
        if not self.standby_logged:
            log.warning(
                "group_standby",
                group=self.key,
                folder=str(self.folder),
                reason="another dropd holds the folder's lock; taking over when it goes",
            )
            self.standby_logged = True

    def watch(self) -> None:
        """Watch the folder held, if there is a watcher and it does not watch it yet."""
        if self.watcher is None or self.watcher.watching(self.key) or not self.spool.opened:
            return
        try:
            # The folder as held, not its path (a folder made again there is another one);
            # .dropd, whose lock someone may remove; and the spool, where `dropd retry` puts
            # a batch back while we run.
            root = self.spool.root.io_path
            self.watcher.watch(self.key, f"{root}/.", f"{root}/{SPOOL_DIR}", f"{self.spool.work}/.")
        except OSError as exc:
            log.warning(
                "watch_failed",
                group=self.key,
                reason=_reason(exc),
                fix="raise fs.inotify.max_user_watches or set poll_seconds",
            )

    def unreadable(self, exc: BaseException) -> None:
        """An unmounted share or a folder that cannot be listed: say so, stop watching, and
        look again at a later scan."""
        self.unwatch()
        self.health.set_error(
            Step.FOLDER,
            f"{self.folder} cannot be read: {_reason(exc)}; "
            "check the share is mounted and dropd may read it",
        )

    def lost(self, reason: str) -> None:
        """The folder held is no longer the group's (gone, replaced): in Error until let go."""
        self.health.set_error(Step.FOLDER, reason)
        self.losing = reason

    def where(self) -> str:
        """Where the folder held is now, or its configured path if none is held."""
        return self.spool.root.where() if self.spool.opened else str(self.folder)

    def let_go(self) -> None:
        """Stop watching and unlock, so that the next visit takes the folder now at the path,
        lock first."""
        self.unwatch()
        self.spool.unlock()
        self.owner, self.losing = False, None
        self.next_try = 0.0

    def try_again_now(self) -> None:
        """New settings: a standby tries the lock at the next visit."""
        self.next_try = 0.0

    def unwatch(self) -> None:
        """No more events for this group, until the next `watch`."""
        if self.watcher is not None:
            self.watcher.unwatch(self.key)

    def stop_watching(self) -> None:
        """The group left the config: no more events (a new group may take its key)."""
        self.unwatch()
        self.watcher = None

    def release(self) -> None:
        """Let go of the folder once nothing is in flight; its spool waits on disk."""
        self.spool.unlock()
        log.info("group_removed", group=self.key, folder=str(self.folder))


def _folder_reason(folder: Path, exc: BaseException) -> str:
    if isinstance(exc, FolderError):
        return exc.reason
    return f"{folder}: {_reason(exc)}"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, SpoolError):
        return exc.reason
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)
