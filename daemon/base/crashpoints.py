"""Test hooks: named moments at which the daemon kills itself (`kill -9`), to prove recovery;
lost file events, to prove the rescan; a hung loop, to prove the watchdog; a short stop grace.

Set `DROPD_TEST_CRASH_AT` to one of `POINTS` (optionally `NAME:N` for its N-th passage) in the
daemon's environment; without it every call is a no-op. Production never sets it.
"""

from __future__ import annotations

import os
import signal
import threading

ENV = "DROPD_TEST_CRASH_AT"
POINTS = (
    "intended",  # the batch's manifest lists the files about to join it, with their kinds
    "claimed",  # a file was renamed into its batch (an open one, or one of its own)
    "closed",  # the batch's manifest says `claimed` (in line)
    "zipped",  # upload.zip is complete and recorded
    "uploading",  # the manifest says `uploading`; the POST has not started
    "answered",  # the server answered 200; nothing is recorded yet
    "recorded",  # the manifest holds the outcome; the files have not moved
    "moved",  # the files are in sent/ or failed/; the spool folder is not cleaned up
)

# Two more test hooks, for proving the periodic rescan: lose every file event, and rescan
# more often than the minute production uses.
LOSE_EVENTS_ENV = "DROPD_TEST_LOSE_EVENTS"
RESCAN_ENV = "DROPD_TEST_RESCAN_SECONDS"
# The scheduler loop hangs for good once this file exists (systemd's watchdog must notice).
HANG_ENV = "DROPD_TEST_HANG_FILE"
# SIGTERM's wait for an upload in flight, shorter than production's.
STOP_GRACE_ENV = "DROPD_TEST_STOP_GRACE_SECONDS"

# How often each point was passed in this process (`NAME:N` kills at the N-th), from any
# thread: a test hook's count, process-wide like the kill it leads to.
_lock = threading.Lock()
_passages: dict[str, int] = {}


def _target() -> tuple[str, int] | None:
    value = os.environ.get(ENV, "")
    if not value:
        return None
    name, _, count = value.partition(":")
    return name, int(count or 1)


def reached(point: str) -> None:
    """Kill this process with SIGKILL if a test asked for a crash at `point`."""
    target = _target()
    if target is None or target[0] != point:
        return
    with _lock:
        _passages[point] = _passages.get(point, 0) + 1
        if _passages[point] == target[1]:
            os.kill(os.getpid(), signal.SIGKILL)


def events_lost() -> bool:
    """True when a test wants every file event dropped, as an inotify overflow would."""
    return bool(os.environ.get(LOSE_EVENTS_ENV))


def rescan_seconds(default: float) -> float:
    """How often to rescan every folder: `default`, unless a test asks for sooner."""
    return float(os.environ.get(RESCAN_ENV) or default)


def hang_if_asked() -> None:
    """Block this thread forever once a test has created the file `DROPD_TEST_HANG_FILE` names."""
    path = os.environ.get(HANG_ENV, "")
    if path and os.path.exists(path):
        threading.Event().wait()


def stop_grace_seconds(default: float) -> float:
    """How long SIGTERM waits for an upload in flight: `default`, unless a test asks for less."""
    return float(os.environ.get(STOP_GRACE_ENV) or default)
