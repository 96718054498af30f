"""When each group next needs the scheduler: a heap of wake-up times, so a wake-up costs the
groups that are due, not every group (1,000 groups wake the loop for a rescan once a minute
each, and a file event concerns one of them).

Pure state with the time passed in. A group may be visited earlier than it asked (a later
`schedule` does not cancel an earlier one): the visit finds nothing due and asks again.
"""

from __future__ import annotations

import heapq

NOW = float("-inf")  # `schedule(key, NOW)`: due at the next look, whatever the clock says


class Agenda:
    """The earliest time each key asked to be visited at."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, str]] = []
        self._earliest: dict[str, float] = {}

    def schedule(self, key: str, at: float | None) -> None:
        """Visit `key` at `at` (or earlier, if it already asked for earlier); None: never."""
        if at is None:
            return
        earlier = self._earliest.get(key)
        if earlier is not None and earlier <= at:
            return
        self._earliest[key] = at
        heapq.heappush(self._heap, (at, key))
        if len(self._heap) > 4 * len(self._earliest) + 64:
            self._compact()

    def due(self, now: float) -> list[str]:
        """The keys whose time has come, earliest first; each is forgotten until scheduled again."""
        found = []
        while self._heap and self._heap[0][0] <= now:
            at, key = heapq.heappop(self._heap)
            if self._earliest.get(key) == at:  # else superseded by an earlier entry, visited
                del self._earliest[key]
                found.append(key)
        return found

    def next_at(self) -> float | None:
        """The earliest time any key asked for, if any did."""
        while self._heap and self._earliest.get(self._heap[0][1]) != self._heap[0][0]:
            heapq.heappop(self._heap)  # an entry an earlier one superseded
        return self._heap[0][0] if self._heap else None

    def forget(self, key: str) -> None:
        """Drop `key` (its group left the config)."""
        self._earliest.pop(key, None)

    def __len__(self) -> int:
        return len(self._earliest)

    def _compact(self) -> None:
        self._heap = [(at, key) for key, at in self._earliest.items()]
        heapq.heapify(self._heap)
