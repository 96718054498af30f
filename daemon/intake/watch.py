"""Turning inotify events into "something changed in group G" on the scheduler's queue.

Every event only means "look at this folder again": which files are complete is decided by
intake from a fresh scan, never from the event itself (events differ by writer and miss
writes made by other hosts on network shares).

One inotify instance and one reader thread serve every folder: watchdog's `InotifyFD`, with
a callback per group instead of watchdog's observer. The observer starts a thread per watch
(2,000 for 1,000 groups, each a spool as well as a drop folder), holds every event behind a
rename out of the folder for half a second while it looks for the other half of the move (a
claim is such a rename), and hears nothing of a queue overflow on a watch that is not
recursive. Here an overflow marks every group changed, and a folder that goes away is
forgotten, so the next scan that finds it again watches it again.
"""

from __future__ import annotations

import os
import queue
from pathlib import Path

import structlog
from watchdog.observers.inotify_c import (
    CallbackId,
    InotifyConstants,
    InotifyEvent,
    InotifyFD,
    Mask,
    WatchDescriptor,
)

from daemon.base import crashpoints

log = structlog.get_logger()

_IN = InotifyConstants
# What changes the list of names or ends a write, and IN_ATTRIB: a `touch` of an old marker
# makes it new, and so its file ready. Not IN_MODIFY: a file still being written is looked
# at again when its settle time is up, so each write() need not wake the scheduler; not
# IN_OPEN, IN_ACCESS or IN_CLOSE_NOWRITE: dropd's own listing of the folder would wake it.
WATCH_MASK = Mask(
    _IN.IN_CREATE
    | _IN.IN_ATTRIB
    | _IN.IN_MOVED_TO
    | _IN.IN_MOVED_FROM
    | _IN.IN_DELETE
    | _IN.IN_CLOSE_WRITE
    | _IN.IN_DELETE_SELF
    | _IN.IN_MOVE_SELF
    | _IN.IN_DONT_FOLLOW
    | _IN.IN_EXCL_UNLINK
)


class FolderChanged:
    """A message for the scheduler: group `group` should be scanned again."""

    __slots__ = ("group",)

    def __init__(self, group: str) -> None:
        self.group = group


class _GroupCallback:
    # Runs in the inotify thread: it only enqueues (an exception would end that thread).
    def __init__(self, group: str, inbox: queue.SimpleQueue[object], gone: set[str]) -> None:
        self._message = FolderChanged(group)
        self._inbox = inbox
        self._gone = gone
        self._lose = crashpoints.events_lost()

    def on_event(self, event: InotifyEvent) -> None:
        if not self._lose:
            self._inbox.put(self._message)

    def on_watch_deleted(self, wd: WatchDescriptor) -> None:
        # The folder (or the spool) was removed or unmounted: watch it again once it is back.
        self._gone.add(self._message.group)
        self._inbox.put(self._message)

    def on_queue_overflow(self) -> None:
        # Events were lost, maybe this group's: look again (every group is told).
        self._inbox.put(self._message)


class FolderWatcher:
    """Native file events for each group's folders (top level only: sent/ is never walked)."""

    def __init__(self, inbox: queue.SimpleQueue[object]) -> None:
        """Raises OSError if no inotify instance can be had (`fs.inotify.max_user_instances`)."""
        self._inbox = inbox
        self._inotify = InotifyFD()
        self._inotify.start()
        self._watches: dict[str, list[tuple[WatchDescriptor, CallbackId]]] = {}
        self._gone: set[str] = set()  # added to by the inotify thread

    def watch(self, group: str, *folders: Path | str) -> None:
        """Start watching `folders` (top level each) for `group`.

        Raises OSError if one cannot be watched (then none is), e.g. errno 28 when
        `fs.inotify.max_user_watches` is reached.
        """
        if self.watching(group):
            return
        self.unwatch(group)  # a watch whose folder went away
        callback = _GroupCallback(group, self._inbox, self._gone)
        handle = CallbackId(id(callback))
        watches: list[tuple[WatchDescriptor, CallbackId]] = []
        try:
            for folder in folders:
                wd = self._inotify.add_callback(os.fsencode(folder), WATCH_MASK, callback, handle)
                watches.append((wd, handle))
        except OSError:
            self._inotify.remove_callbacks(watches)
            raise
        self._watches[group] = watches

    def unwatch(self, group: str) -> None:
        """Stop watching a group's folders (they went away, or the group was removed)."""
        watches = self._watches.pop(group, [])
        self._gone.discard(group)
        try:
            self._inotify.remove_callbacks(watches)
        except OSError as exc:
            log.warning("unwatch_failed", group=group, reason=str(exc))

    def watching(self, group: str) -> bool:
        """True while every folder of `group` is watched."""
        return group in self._watches and group not in self._gone

    def alive(self) -> bool:
        """False once the inotify thread has died (then events are lost)."""
        return self._inotify.is_alive()

    def stop(self) -> None:
        self._inotify.stop()
        self._inotify.join(timeout=5)
