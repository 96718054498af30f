"""systemd notifications (sdnotify): READY, WATCHDOG from the working loop, STATUS, RELOADING,
STOPPING. Without `$NOTIFY_SOCKET` every call does nothing; a socket that fails is logged once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping

import sdnotify
import structlog

log = structlog.get_logger()


class Notifier:
    """Talks to systemd through `$NOTIFY_SOCKET`, read once here as sdnotify does."""

    def __init__(
        self, environ: Mapping[str, str] = os.environ, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """`clock`: the scheduler's, which the watchdog's pings are timed by."""
        self.clock = clock
        self.address = environ.get("NOTIFY_SOCKET", "")
        self._notifier: sdnotify.SystemdNotifier | None = None
        if self.address:
            try:
                # debug=True: sdnotify raises instead of swallowing, so we can say what failed.
                self._notifier = sdnotify.SystemdNotifier(debug=True)
            except OSError as exc:
                log.error("notify_socket_unavailable", socket=self.address, reason=str(exc))
        usec = int(environ.get("WATCHDOG_USEC", "0") or 0)
        self.watchdog_interval = usec / 2e6 if usec > 0 else 0.0
        self._last_ping = 0.0
        self._last_status = ""
        self._failing = False

    @property
    def enabled(self) -> bool:
        return self._notifier is not None

    def _send(self, *lines: str) -> None:
        if self._notifier is None:
            return
        try:
            self._notifier.notify("\n".join(lines))
        except OSError as exc:
            if not self._failing:
                log.warning("notify_failed", socket=self.address, reason=str(exc))
            self._failing = True
        else:
            self._failing = False

    def ready(self, status: str) -> None:
        """Tell systemd the spool is recovered and every folder scanned (or a reload is done)."""
        self._last_status = _ascii(status)
        self._send("READY=1", f"STATUS={self._last_status}")
        self._last_ping = self.clock()

    def heartbeat(self, healthy: bool, status: str) -> None:
        """Ping the watchdog (only while healthy) and send STATUS when it changed."""
        status = _ascii(status)
        if status != self._last_status:
            self._last_status = status
            self._send(f"STATUS={status}")
        now = self.clock()
        if self.watchdog_interval and now - self._last_ping >= self.watchdog_interval:
            if healthy:
                self._send("WATCHDOG=1")
                self._last_ping = now
            else:
                log.error("watchdog_withheld", reason="the file-event observer has died")

    def next_heartbeat(self) -> float | None:
        """When the watchdog wants its next ping, on the clock given, if it is on."""
        if not self.watchdog_interval:
            return None
        return self._last_ping + self.watchdog_interval

    def reloading(self) -> None:
        """Tell systemd a reload has begun (READY=1 follows when it is done)."""
        # systemd compares this with its own CLOCK_MONOTONIC: the system's, whatever the
        # scheduler's clock.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self._send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> None:
        self._send("STOPPING=1")


def _ascii(text: str) -> str:
    # sdnotify encodes latin-1 and silently drops what it cannot: keep STATUS plain ASCII.
    return text.encode("ascii", "replace").decode("ascii").replace("\n", " ")
