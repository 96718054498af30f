"""Time as dropd writes it: the UTC clock and ISO 8601 stamps ending in `Z`."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_precise(moment: datetime) -> str:
    """ISO 8601 in UTC to the microsecond: the line's order survives restarts."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
