"""A group's hold on its folder and spool: the owner lock (or standby), the watch, and the
batches the spool holds put back in line: recovered at start, adopted while running (`dropd
retry`, `dropd release`), closed on disk when found open.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import structlog

from daemon.base import crashpoints
from daemon.base.errors import FolderError, SpoolError
from daemon.base.timestamps import iso_precise
from daemon.config.model import Group
from daemon.delivery.deliver import Delivery
from daemon.delivery.outcome import BatchResult, end_batch
from daemon.intake.readiness import FileKind, classify
from daemon.intake.watch import FolderWatcher
from daemon.runtime.line import GroupLine
from daemon.spool.history import folder_history, held_batches
from daemon.spool.manifest import BatchState, Manifest
from daemon.spool.requeue import finish_staged
from daemon.spool.store import SPOOL_DIR, Spool

log = structlog.get_logger()

STANDBY_RETRY_SECONDS = 2.0  # how often a standby dropd tries the owner lock


@dataclass(eq=False)
class GroupOwnership:
    """A group as its folder sees it: owner or standby, the watch, its line as the spool has it."""

    group: Group
    delivery: Delivery
    spool: Spool
    wall: Callable[[], datetime]
    line: GroupLine = field(default_factory=GroupLine)
    owner: bool = False
    standby_logged: bool = False
    next_owner_try: float = 0.0
    error: tuple[str, str] | None = None  # (step, reason) while something needs a person
    failed_batches: int = 0
    held: dict[str, str] = field(default_factory=dict)  # batch -> reason, as held/ has them
    last_upload: str | None = None
    batch_files: dict[str, int] = field(default_factory=dict)
    unsynced: set[str] = field(default_factory=set)  # batches claimed into, not yet fsynced
    watcher: FolderWatcher | None = None
    losing: str | None = None  # why the folder held is no longer the group's, until let go

    def take_ownership(self, now: float, watcher: FolderWatcher | None) -> None:
        """Take the folder's lock and recover its spool; stand by if another dropd has it."""
        if now < self.next_owner_try:
            return
        self.next_owner_try = now + STANDBY_RETRY_SECONDS
        self.watcher = watcher
        folder_was_wrong = self.error is not None and self.error[0] == "folder"
        try:
            if not self.spool.try_lock():
                self.spool.unlock()  # hold nothing of a folder another dropd works
                self._standby()
                return
            self.owner = True
            self.recover()
        except (SpoolError, OSError) as exc:
            if not self.owner:
                self.spool.unlock()
            self.set_error("folder", _folder_reason(self.group.folder, exc))
            return
        if folder_was_wrong:
            log.info("group_recovered", group=self.group.key, step="folder")
        self._watch()
        log.info(
            "group_owned",
            group=self.group.key,
            folder=str(self.group.folder),
            batches_recovered=len(self.line.waiting),
        )

    def _standby(self) -> None:
        if not self.standby_logged:
            log.warning(
                "group_standby",
                group=self.group.key,
                folder=str(self.group.folder),
                reason="another dropd holds the folder's lock; taking over when it goes",
            )
            self.standby_logged = True

    def _watch(self) -> None:
        if self.watcher is None or self.watcher.watching(self.group.key) or not self.spool.opened:
            return
        try:
            # The folder as held, not its path (a folder made again there is another one);
            # .dropd, whose lock someone may remove; and the spool, where `dropd retry` puts
            # a batch back while we run.
            root = self.spool.root.io_path
            self.watcher.watch(
                self.group.key, f"{root}/.", f"{root}/{SPOOL_DIR}", f"{self.spool.work}/."
            )
        except OSError as exc:
            log.warning(
                "watch_failed",
                group=self.group.key,
                reason=_reason(exc),
                fix="raise fs.inotify.max_user_watches or set poll_seconds",
            )

    def _folder_lost(self, exc: BaseException) -> None:
        # An unmounted share or a folder that cannot be listed: say so, stop watching, and
        # look again at a later scan.
        if self.watcher is not None:
            self.watcher.unwatch(self.group.key)
        self.set_error(
            "folder",
            f"{self.group.folder} cannot be read: {_reason(exc)}; "
            "check the share is mounted and dropd may read it",
        )

    def let_go(self, reason: str) -> bool:
        """The folder held is no longer the group's (gone, replaced): say why, and once no
        upload is in flight let go of it (lock, descriptors, the line as it knew it), so
        that the next visit takes the folder now at the path, lock first. Its batches stay
        on disk where they are. True once it has let go."""
        self.set_error("folder", reason)
        self.losing = reason
        if self.line.in_flight is not None:
            return False  # it finishes in the folder it began in, through its descriptors
        if self.watcher is not None:
            self.watcher.unwatch(self.group.key)
        left = [*self.line.waiting, *([self.line.open.batch_id] if self.line.open else [])]
        where = self.spool.root.where() if self.spool.opened else str(self.group.folder)
        self.spool.unlock()
        self.owner, self.losing = False, None
        self.line = GroupLine()
        self.batch_files = {}
        self.unsynced = set()
        self.next_owner_try = 0.0
        log.error(
            "group_folder_lost",
            group=self.group.key,
            folder=str(self.group.folder),
            reason=reason,
            batches_left=len(left),
            left_in=f"{where}/{SPOOL_DIR}/work" if left else None,
        )
        return True

    def recover(self) -> None:
        """Put every batch found in the spool back in line, in line order; close open ones."""
        for batch_id in self.spool.clear_unfinished_folders():
            log.warning("batch_folder_adopted", group=self.group.key, batch=batch_id)
        for batch_id in finish_staged(self.spool):
            log.warning("batch_requeue_finished", group=self.group.key, batch=batch_id)
        self._enqueue(self.spool.batch_ids(), "batch_recovered")
        self._reunite_markers()
        # What status shows outlives a restart: sent/ and failed/ hold it.
        past = folder_history(self.spool.root)
        self.failed_batches, self.last_upload = past.failed_batches, past.last_upload
        if self.error is None or self.error[0] == "folder":
            self.error = past.last_failure
        self.held = held_batches(self.spool.root)

    def _reunite_markers(self) -> None:
        top = [n for n in self.spool.root.names() if classify(n) is FileKind.MARKER]
        if not top:
            return
        for batch_id in [*self.line.waiting]:
            for marker in self.spool.reunite_markers(batch_id, top):
                log.warning("marker_reunited", group=self.group.key, batch=batch_id, file=marker)

    def adopt(self) -> None:
        """Put in line the batches that appeared in the spool (`dropd retry`, `release`), and
        forget the held batches that left held/ (released, or removed by a person)."""
        known = {*self.line.waiting, self.line.in_flight}
        if self.line.open is not None:
            known.add(self.line.open.batch_id)
        if self._spool_has_new(known):
            self._enqueue([b for b in self.spool.batch_ids() if b not in known], "batch_adopted")
        # One stat where held/ has never been made: every poll of every group comes here.
        if self.held or self.spool.root.entry_identity("held") is not None:
            self.held = held_batches(self.spool.root, self.held)

    def _spool_has_new(self, known: set[str | None]) -> bool:
        # One listing per scan; the manifests are looked for only when a name is new.
        names = self.spool.work_folder.names()
        return any(n not in known and not n.startswith(".") for n in names)

    def _enqueue(self, batch_ids: list[str], event: str) -> None:
        manifests = sorted(
            (self.spool.load(b) for b in batch_ids), key=lambda m: (m.queued or m.created, m.batch)
        )
        for manifest in manifests:
            if manifest.refused is not None and manifest.state is BatchState.OPEN:
                self.refuse(manifest)  # its file failed at intake before a crash
                continue
            if manifest.state is BatchState.OPEN:
                self.unsynced.add(manifest.batch)  # claimed by a process that may not have synced
                if self._close(manifest.batch):
                    self.line.waiting.append(manifest.batch)
                continue
            count = self.spool.file_count(manifest.batch)
            self.line.waiting.append(manifest.batch)
            self.batch_files[manifest.batch] = count
            log.info(
                event,
                group=self.group.key,
                batch=manifest.batch,
                state=manifest.state.value,
                files=count,
            )

    def _close(self, batch_id: str) -> bool:
        """Record a batch as closed on disk; False if it was empty and is gone."""
        count = self.spool.file_count(batch_id)
        if count == 0:
            # Every file of it vanished before its claim: nothing to send, nothing to keep.
            self.spool.discard_empty(batch_id)
            self.unsynced.discard(batch_id)
            log.info("batch_discarded", group=self.group.key, batch=batch_id, reason="empty")
            return False
        # Its claims are durable before the manifest that acts on them says `claimed` (the
        # scan that claimed them has synced them, unless a rule-3 close comes in its middle).
        if batch_id in self.unsynced:
            self.spool.sync_claims(batch_id)
            self.unsynced.discard(batch_id)
        manifest = self.spool.load(batch_id)
        manifest.state = BatchState.CLAIMED
        manifest.queued = iso_precise(self.wall())
        self.spool.save(manifest)
        crashpoints.reached("closed")
        self.batch_files[batch_id] = count
        log.info(
            "batch_closed",
            group=self.group.key,
            batch=batch_id,
            files=count,
            position=len(self.line.waiting) + 1,
        )
        return True

    def refuse(self, manifest: Manifest) -> None:
        """End a batch whose one file fails at step intake (its reason is in the manifest):
        to failed/ now, or, where failed/ cannot take it, in line to be filed later."""
        assert manifest.refused is not None
        if not self.spool.file_count(manifest.batch):
            self._close(manifest.batch)  # the file vanished before its claim: nothing to do
            return
        try:
            result = end_batch(self.delivery, manifest, "intake", manifest.refused)
        except FolderError as exc:
            self.line.waiting.append(manifest.batch)  # filed by its delivery, once fixed
            self.batch_files[manifest.batch] = self.spool.file_count(manifest.batch)
            self.set_error("folder", exc.reason)
            return
        self.record(result, self.wall())

    def record(self, result: BatchResult, moment: datetime) -> None:
        """Keep what status needs from a batch's result: the group's worker does (metrics,
        status); the folder's part only hands it the results of intake."""
        raise NotImplementedError("GroupWorker.record keeps a batch's result")

    def set_error(self, step: str, reason: str) -> None:
        if self.error != (step, reason):
            log.error("group_error", group=self.group.key, step=step, reason=reason)
        self.error = (step, reason)

    def stop_watching(self) -> None:
        """The group left the config: no more events (a new group may take its key)."""
        if self.watcher is not None:
            self.watcher.unwatch(self.group.key)
        self.watcher = None

    def release(self) -> None:
        """Let go of the folder once nothing is in flight; its spool waits on disk."""
        self.spool.unlock()
        log.info("group_removed", group=self.group.key, folder=str(self.group.folder))


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
