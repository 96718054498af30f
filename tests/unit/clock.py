"""A clock for code that takes one (`clock: Callable[[], float]`), moved by hand in a test."""

from __future__ import annotations

__all__ = ["ManualClock"]


class ManualClock:
    """A clock the test moves by hand: calling it reads `now`; set or add to `now` to move it."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
