"""The helper process that checks stretches of large CSVs beside the daemon (`csvsplit`).

One child, `python -m daemon.checks.csv.split`, started the first time a large CSV is checked
and kept while dropd runs: a line of JSON in on its stdin asks for a stretch, a line of
JSON out on its stdout answers. It reads the spool's file itself (it runs as the same user,
under the same unit), so only offsets and counts cross the pipe. It ends when its stdin
closes, which the daemon's exit does whatever way it exits. A helper that fails (it dies,
answers nonsense) is logged and left alone for a minute; meanwhile files are checked in
order, as they are without one.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import structlog

from daemon.checks.csv.split import Helper, Splitter, Stretch

RETRY_SECONDS = 60.0  # after a failure, files are checked alone this long
STOP_SECONDS = 2.0
ANSWER_READ_BYTES = 4096
ANSWER_SECONDS = 120.0  # a stretch takes tens of ms; a stuck helper (a hung share) is let go

log = structlog.get_logger()


class _Child:
    """The running helper process, as the daemon sees it: `csvsplit.Helper`."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        assert process.stdin is not None and process.stdout is not None
        self.requests: IO[bytes] = process.stdin
        self.answers: IO[bytes] = process.stdout
        self.failed = False
        self.pending = b""

    def ask(self, path: Path, start: int, end: int, last: bool) -> bool:
        request = {"path": os.fspath(path), "start": start, "end": end, "last": last}
        try:
            self.requests.write(json.dumps(request).encode() + b"\n")
            self.requests.flush()
        except OSError as exc:
            self._fail(f"the request could not be written ({exc.strerror or exc})")
        return not self.failed

    def answer(self, wait: bool) -> Stretch | None:
        if self.failed:
            return None
        # Two answers may come in one read: the second waits here, not in a buffer that
        # `poll` cannot see.
        while b"\n" not in self.pending:
            try:
                # poll, not select: with a thousand groups this pipe's descriptor is past
                # 1,023, which select cannot watch.
                waiting = select.poll()
                waiting.register(self.answers.fileno(), select.POLLIN)
                ready = waiting.poll(ANSWER_SECONDS * 1000 if wait else 0)
                if not ready and wait:
                    self._fail(f"it gave no answer in {ANSWER_SECONDS:.0f} s")
                if not ready:
                    return None
                data = os.read(self.answers.fileno(), ANSWER_READ_BYTES)
            except OSError as exc:
                self._fail(f"its answer could not be read ({exc.strerror or exc})")
                return None
            if not data:
                return self._stretch(b"")
            self.pending += data
        line, _, rest = self.pending.partition(b"\n")
        self.pending = rest
        return self._stretch(line)

    def _stretch(self, line: bytes) -> Stretch | None:
        try:
            answer = json.loads(line)
            return Stretch(
                int(answer["lines"]),
                int(answer["rows"]),
                int(answer["deleted"]),
                answer["clean"] is True,
            )
        except (ValueError, TypeError, KeyError):
            if not line:
                self.process.poll()
                why = f"it exited with {self.process.returncode}"
            else:
                why = f"it answered {line[:200]!r}"
            self._fail(why)
            return None

    def _fail(self, why: str) -> None:
        self.failed = True
        log.warning("scan_helper_failed", pid=self.process.pid, reason=why)
        self.stop()

    def stop(self) -> None:
        """Close its stdin, which ends it; kill it if it is still there after a while."""
        with contextlib.suppress(OSError):  # a broken pipe: it is gone already
            self.requests.close()
        try:
            self.process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.answers.close()


class HelperPool:
    """`csvsplit.HelperSource`: the one helper, lent to one file at a time."""

    def __init__(self, command: list[str] | None = None) -> None:
        self.command = command or [sys.executable, "-m", "daemon.checks.csv.split"]
        self._lock = threading.Lock()
        self._child: _Child | None = None
        self._resting_until = 0.0

    def borrow(self) -> Helper | None:
        if not self._lock.acquire(blocking=False):
            return None  # another file has it: this one is checked in order
        child = self._child if self._child is not None else self._start()
        if child is None:
            self._lock.release()
        return child

    def give_back(self, helper: Helper) -> None:
        if helper.failed:
            self._child, self._resting_until = None, time.monotonic() + RETRY_SECONDS
        self._lock.release()

    def close(self) -> None:
        """Stop the helper, if one runs (at exit: a file being checked is read alone)."""
        child, self._child = self._child, None
        if child is not None:
            child.stop()

    def _start(self) -> _Child | None:
        if time.monotonic() < self._resting_until:
            return None
        try:
            process = subprocess.Popen(
                self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True
            )
        except OSError as exc:
            log.warning("scan_helper_failed", reason=f"it could not start ({exc.strerror})")
            self._resting_until = time.monotonic() + RETRY_SECONDS
            return None
        log.info("scan_helper_started", pid=process.pid)
        self._child = _Child(process)
        return self._child


def scan_splitter() -> tuple[HelperPool, Splitter]:
    """The helper pool and the splitter that lends its helper, for one run of dropd (or of
    `dropd check`); whoever makes them closes the pool when done."""
    helpers = HelperPool()
    return helpers, Splitter(helpers)
