"""Per-group batch decisions: when an open batch closes, which batch goes up next, retry waits.

Pure state with the time passed in: the scheduler owns one `GroupLine` per group and asks it
what to do; the spool does the disk work.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class BatchTiming:
    """The windows of rule 3."""

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

    def takes(self, name: str) -> bool:
        """True if a file called `name` can join the open batch (rule 3: no repeated name)."""
        return self.open is not None and name not in self.open.names

    def add(self, name: str, now: float) -> None:
        """Record that `name` joined the open batch at `now`."""
        assert self.open is not None
        self.open.names.add(name)
        self.open.last_at = now

    def close_open(self) -> str | None:
        """Close the open batch and put it at the back of the line; returns its id."""
        if self.open is None:
            return None
        batch_id = self.open.batch_id
        self.open = None
        self.waiting.append(batch_id)
        return batch_id

    def due(self, now: float, timing: BatchTiming) -> bool:
        """True once the open batch's window has passed (rule 3)."""
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
        self.not_before = 0.0

    def retry_later(self, at: float) -> None:
        """The batch in flight stays at the head of the line and waits until `at`."""
        self.in_flight = None
        self.not_before = at

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
