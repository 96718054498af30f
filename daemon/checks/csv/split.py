"""Checking a large CSV on both cores: stretches of its lines read by a helper process.

Checking rows holds the GIL at about 350 MB/s on one core, so a second thread would not
help; a second process does. The file is cut into stretches of `STRETCH_BYTES` at line
ends. The daemon reads them in order from the front, as `csvcheck` always has; the helper
takes them from the back, two asked at a time, each read on its own as if a row began
there, and says how many lines, rows and deleted rows it holds, and whether it
found nothing at all to report. Where the two meet, each stretch of the helper's is
counted in only where the daemon's own reading has come to a row boundary with nothing
pending (no quoted field open, no blank line waiting) and the helper found nothing;
otherwise the daemon reads that stretch itself. So the findings, line numbers and counts
are always those of reading the file in order: the helper only saves time on files
with nothing to report, which is nearly every large one.

The helper's side is `python -m daemon.checks.csv.split` (`main`: a stretch asked on each line of
its stdin, answered on a line of its stdout); `scanhelper` starts and lends it. This module
imports neither logging nor deflate, so that the helper's memory is small.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, Protocol

from daemon.base.regular import open_regular
from daemon.checks.csv.check import HEADER_READ_BYTES, CsvReader

STRETCH_BYTES = 8 << 20  # about 25 ms of checking: the two sides meet within one of them
SPLIT_MIN_BYTES = 32 << 20  # below this, a file is checked before a helper would start
LOOK_BYTES = 64 << 10  # read at a cut to find the next line end
ASKED_AHEAD = 2


@dataclass(frozen=True, slots=True)
class Stretch:
    """What one stretch of a CSV held, read on its own from a row boundary."""

    lines: int  # line ends in it (one more where the file's last line has none)
    rows: int
    deleted: int
    clean: bool  # nothing to report, and it ends at a row boundary (or the file's end)


class Helper(Protocol):
    """The other process's side: stretches asked, answered in the order asked."""

    @property
    def failed(self) -> bool: ...

    def ask(self, path: Path, start: int, end: int, last: bool) -> bool: ...
    def answer(self, wait: bool) -> Stretch | None: ...


class HelperSource(Protocol):
    """Lends a helper to one file at a time, or none (busy, or failed lately)."""

    def borrow(self) -> Helper | None: ...
    def give_back(self, helper: Helper) -> None: ...


def read_stretch(path: Path, start: int, end: int, last: bool) -> Stretch:
    """Check `path[start:end]` as rows under its header line (the helper's side).

    Raises OSError if the file cannot be read.
    """
    reader = CsvReader(path, strict=True)
    with open_regular(path) as source:
        head = source.read(HEADER_READ_BYTES)
        cut = head.find(b"\n")
        if cut < 0:
            return Stretch(0, 0, 0, clean=False)
        reader.feed(head[: cut + 1])
        if not reader.checking_rows():
            return Stretch(0, 0, 0, clean=False)
        first, source_rows = reader.line, reader.scan.rows
        source.seek(start)
        reader.read(source, end - start)
        if last:
            reader.finish()
    scan = reader.scan
    problems, warnings = scan.problems, scan.warnings
    found = problems.listed or problems.more or warnings.listed or warnings.more
    clean = not found and (last or reader.between_rows())
    return Stretch(reader.line - first, scan.rows - source_rows, scan.deleted or 0, clean)


class Splitter:
    """`csvcheck.Splitter`: reads a large CSV's rows with a helper's help, where one is
    free; without one, in order as ever."""

    def __init__(
        self,
        helpers: HelperSource,
        stretch_bytes: int = STRETCH_BYTES,
        min_bytes: int = SPLIT_MIN_BYTES,
    ) -> None:
        self.helpers, self.stretch_bytes, self.min_bytes = helpers, stretch_bytes, min_bytes

    def wanted(self, size: int) -> bool:
        return size >= self.min_bytes

    def read_rest(self, reader: CsvReader, source: BinaryIO, size: int) -> None:
        helper = self.helpers.borrow()
        if helper is None:  # busy with another file, or resting: no cuts to look for
            reader.read(source)
            return
        try:
            bounds = cuts(source, source.tell(), size, self.stretch_bytes)
            if len(bounds) > 2:
                _Shared(reader, source, bounds, helper).read()
            else:
                reader.read(source)
        finally:
            self.helpers.give_back(helper)


class _Shared:
    """One file's stretches: the daemon's from the front, the helper's from the back.

    Two are asked of the helper at a time, so that it never waits on the daemon to
    notice an answer between two stretches of its own.
    """

    def __init__(
        self, reader: CsvReader, source: BinaryIO, bounds: list[int], helper: Helper
    ) -> None:
        self.reader, self.source, self.bounds, self.helper = reader, source, bounds, helper
        self.front, self.back = 0, len(bounds) - 1  # read here: [0, front); helper's: [back, -)
        self.asked: deque[int] = deque()  # in the order the helper answers them
        self.found: dict[int, Stretch] = {}

    def read(self) -> None:
        while self.front < self.back or self.asked:
            self._ask()
            if self.front < self.back:
                self._read_here(self.front)
                self.front += 1
            self._collect(wait=self.front >= self.back)
        for index in range(self.back, len(self.bounds) - 1):
            stretch = self.found.get(index)
            if stretch is not None and stretch.clean and self.reader.between_rows():
                size = self.bounds[index + 1] - self.bounds[index]
                self.reader.skip(size, stretch.lines, stretch.rows, stretch.deleted)
            else:
                self._read_here(index)

    def _ask(self) -> None:
        while (
            len(self.asked) < ASKED_AHEAD and not self.helper.failed and self.back - 1 > self.front
        ):
            index = self.back - 1
            last = index == len(self.bounds) - 2
            if not self.helper.ask(
                self.reader.path, self.bounds[index], self.bounds[index + 1], last
            ):
                return
            self.asked.append(index)
            self.back = index

    def _collect(self, wait: bool) -> None:
        while self.asked:
            stretch = self.helper.answer(wait)
            if stretch is not None:
                self.found[self.asked.popleft()] = stretch
            elif self.helper.failed:
                self.asked.clear()  # their stretches are read here
            else:
                return
            wait = False

    def _read_here(self, index: int) -> None:
        self.source.seek(self.bounds[index])
        self.reader.read(self.source, self.bounds[index + 1] - self.bounds[index])


def cuts(source: BinaryIO, start: int, size: int, step: int) -> list[int]:
    """Offsets from `start` to `size`, each other one just after a line end about `step`
    bytes past the one before. Leaves `source` at `start`."""
    bounds, at = [start], start + step
    while at < size:
        source.seek(at)
        cut = source.read(LOOK_BYTES).find(b"\n")
        if cut >= 0 and at + cut + 1 < size:
            bounds.append(at + cut + 1)
        at = (at + cut + 1 if cut >= 0 else at + LOOK_BYTES) + step
    bounds.append(size)
    source.seek(start)
    return bounds


def serve(requests: IO[bytes], answers: IO[bytes]) -> None:
    """The helper's loop: a stretch for each request, until its stdin closes."""
    for line in requests:
        request: dict[str, Any] = json.loads(line)
        try:
            stretch = read_stretch(
                Path(request["path"]), request["start"], request["end"], request["last"]
            )
            answer: dict[str, Any] = dataclasses.asdict(stretch)
        except OSError as exc:  # the daemon reads this stretch itself, and says why
            answer = {**dataclasses.asdict(Stretch(0, 0, 0, False)), "error": str(exc)}
        answers.write(json.dumps(answer).encode() + b"\n")
        answers.flush()


def main() -> None:
    # Stopping is the daemon's to decide (systemd signals every process of the unit, a
    # terminal's Ctrl-C the whole group): the helper ends when the daemon's end closes
    # its stdin, so a file being checked at a stop is not reported as a failed helper.
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a stray print must not answer
    try:
        serve(sys.stdin.buffer, answers)
    except BrokenPipeError:  # the daemon went while a stretch was read: no one to answer
        os._exit(0)


if __name__ == "__main__":
    main()
