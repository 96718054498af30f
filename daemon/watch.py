"""Turning watchdog's file events into "something changed in group G" on the scheduler's queue.

Every event only means "look at this folder again": which files are complete is decided by
intake from a fresh scan, never from the event itself (watchdog's events differ by observer
and miss writes made by other hosts on network shares).
"""

from __future__ import annotations

import queue
from pathlib import Path

import structlog
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch

from daemon import crashpoints

log = structlog.get_logger()


class FolderChanged:
    """A message for the scheduler: group `group` should be scanned again."""

    __slots__ = ("group",)

    def __init__(self, group: str) -> None:
        self.group = group


class _Notifier(FileSystemEventHandler):
    # Handlers only enqueue: an exception here would kill the observer thread silently.
    def __init__(self, group: str, inbox: queue.SimpleQueue[object]) -> None:
        self._message = FolderChanged(group)
        self._inbox = inbox
        self._lose = crashpoints.events_lost()

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type != "opened" and not self._lose:
            self._inbox.put(self._message)


class FolderWatcher:
    """Native file events for each group's folder (top level only: sent/ is never walked)."""

    def __init__(self, inbox: queue.SimpleQueue[object]) -> None:
        self._inbox = inbox
        self._observer: BaseObserver = Observer()
        self._watches: dict[str, list[ObservedWatch]] = {}
        self._observer.start()

    def watch(self, group: str, *folders: Path) -> None:
        """Start watching `folders` (top level each) for `group`.

        Raises OSError if one cannot be watched (then none is).
        """
        if group in self._watches:
            return
        handler = _Notifier(group, self._inbox)
        watches: list[ObservedWatch] = []
        try:
            for folder in folders:
                watches.append(self._observer.schedule(handler, str(folder), recursive=False))
        except OSError:
            for watch in watches:
                self._observer.unschedule(watch)
            raise
        self._watches[group] = watches

    def unwatch(self, group: str) -> None:
        """Stop watching a group's folders (they went away, or the group was removed)."""
        for watch in self._watches.pop(group, []):
            try:
                self._observer.unschedule(watch)
            except (KeyError, OSError) as exc:
                log.warning("unwatch_failed", group=group, reason=str(exc))

    def watching(self, group: str) -> bool:
        return group in self._watches

    def alive(self) -> bool:
        """False once the observer thread has died (then events are lost)."""
        return self._observer.is_alive()

    def stop(self) -> None:
        self._observer.stop()
        self._observer.join(timeout=5)
