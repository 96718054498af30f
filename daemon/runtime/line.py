"""Per-group batch decisions: when an open batch closes, which batch goes up next, retry waits.

Pure state with the time passed in: each group's runtime owns one `GroupLine` and asks it
what to do; the spool does the disk work.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class BatchTiming:
    """When a batch closes: quiet_seconds without arrivals, or max_wait_seconds after it opened."""

    quiet_seconds: float
    max_wait_seconds: float


@dataclass(slots=True)
class OpenBatch:
    """The batch ready files are joining now."""

    batch_id: str
    first_at: float
    last_at: float
    names: set[str] = field(default_factory=set)
    not_before: float = 0.0  # a close the disk refused is tried again from then

    def closes_at(self, timing: BatchTiming) -> float:
        """When it closes: quiet after the last arrival, or max-wait after the first."""
        due = min(self.last_at + timing.quiet_seconds, self.first_at + timing.max_wait_seconds)
        return max(due, self.not_before)


@dataclass(slots=True)
class GroupLine:
    """One group's batches: the open one, the line of closed ones, the one in flight."""

    open: OpenBatch | None = None
    waiting: deque[str] = field(default_factory=deque)
    in_flight: str | None = None
    not_before: float = 0.0  # the head of the line waits for a retry until then
    failures: int = 0  # waits and retries in a row of the head of the line, for the backoff
    files: dict[str, int] = field(default_factory=dict)  # closed batch -> its files

    def takes(self, name: str) -> bool:
        """True if a file called `name` can join the open batch (a repeated name starts a batch)."""
        return self.open is not None and name not in self.open.names

    def open_new(self, batch_id: str, now: float) -> None:
        """Files join batch `batch_id` from `now` (the one open before is closed or gone)."""
        self.open = OpenBatch(batch_id, now, now)

    def reserve(self, name: str) -> None:
        """`name` is being claimed into the open batch: a namesake after it starts anew."""
        assert self.open is not None
        self.open.names.add(name)

    def unreserve(self, name: str) -> None:
        """The claim of `name` found no file: it is not in the open batch after all."""
        assert self.open is not None
        self.open.names.discard(name)

    def add(self, name: str, now: float) -> None:
        """Record that `name` joined the open batch at `now`."""
        assert self.open is not None
        self.open.names.add(name)
        self.open.last_at = now

    def close_open(self, files: int = 0) -> str | None:
        """Close the open batch (of `files` files) and put it at the back of the line;
        returns its id."""
        if self.open is None:
            return None
        batch_id = self.open.batch_id
        self.open = None
        self.enqueue(batch_id, files)
        return batch_id

    def drop_open(self) -> None:
        """The open batch is gone (every file of it vanished before its claim)."""
        self.open = None

    def delay_close(self, at: float) -> None:
        """The disk refused to close the open batch: try again from `at`."""
        assert self.open is not None
        self.open.not_before = at

    def enqueue(self, batch_id: str, files: int) -> None:
        """Put closed batch `batch_id` (of `files` files) at the back of the line."""
        self.waiting.append(batch_id)
        self.files[batch_id] = files

    def due(self, now: float, timing: BatchTiming) -> bool:
        """True once the open batch's window has passed."""
        return self.open is not None and now >= self.open.closes_at(timing)

    def next_to_send(self, now: float) -> str | None:
        """The batch to start now: the head of the line, if nothing is in flight."""
        if self.in_flight is None and self.waiting and now >= self.not_before:
            return self.waiting[0]
        return None

    def start(self, batch_id: str) -> None:
        """Mark the head of the line as in flight."""
        assert self.waiting and self.waiting[0] == batch_id
        self.in_flight = batch_id

    def finish(self, batch_id: str) -> None:
        """The batch in flight is done (sent or failed): it leaves the line."""
        self.in_flight = None
        if self.waiting and self.waiting[0] == batch_id:
            self.waiting.popleft()
            self.files.pop(batch_id, None)
        self.not_before = 0.0
        self.failures = 0

    def failed(self) -> int:
        """The batch in flight must wait: how many times in a row the line has waited."""
        self.failures += 1
        return self.failures

    def retry_later(self, at: float) -> None:
        """The batch in flight stays at the head of the line and waits until `at`."""
        self.in_flight = None
        self.not_before = at

    def retry_now(self) -> None:
        """What made the line wait is over (a fix, new settings): the head may go at once."""
        self.failures = 0
        self.not_before = 0.0

    def clear(self) -> None:
        """Forget every batch (they stay on disk): the folder they are in was let go. The
        backoff goes on where it was: the server's trouble did not end with the folder."""
        self.open = None
        self.waiting.clear()
        self.in_flight = None
        self.not_before = 0.0
        self.files.clear()

    def batch_ids(self) -> list[str]:
        """The batches in line, then the open one."""
        return [*self.waiting, *([self.open.batch_id] if self.open else [])]

    def known(self) -> set[str]:
        """Every batch the line has: open, waiting or in flight."""
        known = {*self.batch_ids()}
        if self.in_flight is not None:
            known.add(self.in_flight)
        return known

    def files_waiting(self) -> int:
        """The files of the open batch and of the batches in line."""
        open_files = len(self.open.names) if self.open else 0
        return open_files + sum(self.files.get(b, 0) for b in self.waiting)

    def next_deadline(self, timing: BatchTiming) -> float | None:
        """The next moment something is due in this group, if any."""
        times = []
        if self.open is not None:
            times.append(self.open.closes_at(timing))
        if self.in_flight is None and self.waiting:
            times.append(self.not_before)
        return min(times) if times else None


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter between `initial` and `maximum` seconds."""

    initial: float
    maximum: float

    def delay(self, attempt: int, rng: random.Random, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt number `attempt + 1` (attempt counts from 1)."""
        # The exponent is capped: a float overflows past 2**1023 in a long outage.
        ceiling = min(self.maximum, self.initial * 2.0 ** min(max(0, attempt - 1), 64))
        jittered = rng.uniform(ceiling / 2, ceiling)
        if retry_after is not None:
            return max(retry_after, jittered) if retry_after <= self.maximum else retry_after
        return jittered
