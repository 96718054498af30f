"""When the scheduler publishes, and what: the status file, the metrics and STATUS= (with the
watchdog's heartbeat) each cost a pass over every group, so they go out at most every
PUBLISH_SECONDS while things happen, and every QUIET_PUBLISH_SECONDS when nothing does (the
status file is rewritten every REFRESH_SECONDS, so `dropd status` can tell a stuck loop from a
quiet one).
"""

from __future__ import annotations

from collections.abc import Iterable

from daemon.observe.snapshot import GroupSnapshot
from daemon.observe.status import REFRESH_SECONDS, GroupState, group_status

PUBLISH_SECONDS = 0.5
QUIET_PUBLISH_SECONDS = REFRESH_SECONDS / 3


def publish_due(
    now: float, published_at: float, unpublished: bool, heartbeat: float | None
) -> bool:
    """True once a change waited long enough, the quiet refresh is due, or the watchdog is."""
    return (
        (unpublished and now >= published_at + PUBLISH_SECONDS)
        or now >= published_at + QUIET_PUBLISH_SECONDS
        or (heartbeat is not None and now >= heartbeat)
    )


def outline(group: GroupSnapshot) -> tuple[object, ...]:
    """What a visit may change of what status shows, to compare before and after it."""
    # A batch failed at intake, a file seen, a batch closed or started; a change it misses
    # goes out with the next quiet publish.
    return (
        group.failed_batches,
        group.owner,
        group.error,
        group.files_seen,  # a file seen, or claimed
        group.open_batch,
        group.batches_in_line,
        group.in_flight,
    )


def status_line(groups: Iterable[GroupSnapshot]) -> str:
    """The one-line STATUS= summary (ASCII: sdnotify drops anything else)."""
    states = [group_status(g) for g in groups]
    waiting = sum(state.files_waiting or 0 for state in states)
    uploads = [state.last_upload for state in states if state.last_upload]
    last = f"last upload {max(uploads)}" if uploads else "no upload yet"
    # As `dropd status` sees it: a held batch (step guard) counts too.
    errors = [f"{s.group}: {s.step}" for s in states if s.status == GroupState.ERROR]
    problems = f"{len(errors)} in error ({', '.join(errors)})" if errors else "0 in error"
    return f"{len(states)} groups, {waiting} files waiting, {last}, {problems}"
