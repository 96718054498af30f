"""Cutting a batch into uploads that fit `max_upload_bytes`, in the server's order.

The server processes users, then courses, sections, enrollments and Expand listings: parts
keep that order, so a later part never needs what an earlier one has not created. A
`message.properties` travels with the first users file (the server wants both in one
upload). One file is never cut: a file that cannot fit alone fails the batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

SERVER_ORDER = ("users", "courses", "sections", "enrollments", "listings")
PROPERTIES = "message.properties"
# What a ZIP adds around each entry (local header, data descriptor, central directory,
# Zip64 extras, generous) and around the whole (end records).
ENTRY_OVERHEAD = 30 + 24 + 46 + 2 * 28
ARCHIVE_OVERHEAD = 22 + 56 + 20


@dataclass(frozen=True, slots=True)
class Sized:
    """A file of the batch and the bytes its entry takes compressed."""

    name: str
    compressed: int


class TooBig(Exception):
    """One file's entry alone is larger than the limit."""

    def __init__(self, name: str, needs: int) -> None:
        super().__init__(name)
        self.name = name
        self.needs = needs


def server_order(names: list[str], kinds: Mapping[str, str | None]) -> list[str]:
    """`names` sorted as the server processes them; message.properties right after users."""

    def rank(name: str) -> tuple[int, str]:
        kind = "users" if _is_properties(name) else kinds.get(name)
        position = SERVER_ORDER.index(kind) if kind in SERVER_ORDER else len(SERVER_ORDER)
        return (position, "" if _is_properties(name) else name)

    ordered = sorted(names, key=rank)
    found = [n for n in ordered if _is_properties(n)]
    if found:
        # Right after the first users file, so both land in the same part.
        ordered.remove(found[0])
        users = [n for n in ordered if kinds.get(n) == "users"]
        ordered.insert(ordered.index(users[0]) + 1 if users else 0, found[0])
    return ordered


def _is_properties(name: str) -> bool:
    return name.lower() == PROPERTIES  # the server finds it by name in any case


def entry_cost(item: Sized) -> int:
    return item.compressed + ENTRY_OVERHEAD + 2 * len(item.name.encode())


def plan_parts(items: list[Sized], limit: int) -> list[list[str]]:
    """Cut `items` (in server order) into consecutive parts whose ZIPs fit `limit`.

    Raises TooBig if one file cannot fit on its own.
    """
    units = _units(items)
    parts: list[list[str]] = []
    current: list[str] = []
    size = ARCHIVE_OVERHEAD
    for unit in units:
        cost = sum(entry_cost(i) for i in unit)
        if ARCHIVE_OVERHEAD + cost > limit:
            biggest = max(unit, key=entry_cost)
            raise TooBig(biggest.name, ARCHIVE_OVERHEAD + cost)
        if current and size + cost > limit:
            parts.append(current)
            current, size = [], ARCHIVE_OVERHEAD
        current += [i.name for i in unit]
        size += cost
    if current:
        parts.append(current)
    return parts


def _units(items: list[Sized]) -> list[list[Sized]]:
    # message.properties and the users file before it must share a part.
    units: list[list[Sized]] = []
    for item in items:
        if _is_properties(item.name) and units:
            units[-1].append(item)
        else:
            units.append([item])
    return units
