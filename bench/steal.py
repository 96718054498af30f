"""How much of the machine's CPU its host took while a figure was measured.

On a virtual machine the hypervisor may run other guests on the cores this one thinks it
has: Linux counts that time as `steal` in `/proc/stat`. The same code measured here ran
30% slower in hours when the host took a third of the CPU, so the speed benchmarks print
the share beside their figures, and a figure is only worth comparing at a low one.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

_STAT = Path("/proc/stat")


def _times() -> tuple[int, int] | None:
    """All CPU time and the stolen part so far, in ticks; None where Linux does not say."""
    try:
        first = _STAT.read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    if first[0] != "cpu" or len(first) < 9:
        return None
    ticks = [int(value) for value in first[1:9]]  # user .. steal; guest is inside user
    return sum(ticks), ticks[7]


class Steal:
    """`with Steal() as steal: ...`, then `steal.share` (0 to 1, or None) and `str(steal)`."""

    def __init__(self) -> None:
        self.share: float | None = None
        self._start: tuple[int, int] | None = None

    def __enter__(self) -> Steal:
        self._start = _times()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        end = _times()
        if self._start is not None and end is not None and end[0] > self._start[0]:
            self.share = (end[1] - self._start[1]) / (end[0] - self._start[0])

    def __str__(self) -> str:
        return self.describe(self.share)

    @staticmethod
    def describe(share: float | None) -> str:
        if share is None:
            return "CPU taken by the host: unknown"
        return f"CPU taken by the host meanwhile: {share:.0%}"
