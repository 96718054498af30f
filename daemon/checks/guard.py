"""The guard against a broken export: a batch that would delete too much is held.

A CSV counts against the guard when it has at least `min_rows_for_guard` data rows and
*more* than `max_deleted_percent` of them have the status `deleted`: exactly at the limit
is not held. The figures come from the pass that validation already makes (`Report.rows`,
`Report.deleted`); the comparison is made on whole numbers, so no float rounding can move
a file across the limit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

from daemon.base.errors import GuardError, Offence
from daemon.base.names import quoted
from daemon.config.model import Group

__all__ = [
    "GuardSettings",
    "Offence",
    "RowGuard",
    "describe",
    "held_reason",
    "offences",
    "over_limit",
    "percent",
    "row_guard",
]

# What packing hands the guard: data rows and deleted rows per CSV, by file name.
RowGuard = Callable[[Mapping[str, int], Mapping[str, int]], None]


@dataclass(frozen=True, slots=True)
class GuardSettings:
    """A group's limits; `max_deleted_percent` 0 turns the guard off."""

    max_deleted_percent: float = 50.0
    min_rows_for_guard: int = 100

    @classmethod
    def of(cls, group: Group) -> GuardSettings:
        """The limits of `group`."""
        return cls(group.max_deleted_percent, group.min_rows_for_guard)

    @property
    def on(self) -> bool:
        """False when `max_deleted_percent` is 0."""
        return self.max_deleted_percent > 0


def over_limit(rows: int, deleted: int, settings: GuardSettings) -> bool:
    """True when `deleted` of `rows` data rows is more than the guard lets through."""
    if not settings.on or rows < settings.min_rows_for_guard or rows <= 0:
        return False
    # str(): 33.3 is taken as 333/10, as written, not as the float nearest to it.
    return deleted * 100 > Fraction(str(settings.max_deleted_percent)) * rows


def offences(
    rows: Mapping[str, int], deleted: Mapping[str, int], settings: GuardSettings
) -> list[Offence]:
    """The CSVs of a batch that the guard holds it for, by file name; [] when none."""
    return [
        Offence(name, rows[name], count, settings.max_deleted_percent)
        for name, count in sorted(deleted.items())
        if name in rows and over_limit(rows[name], count, settings)
    ]


def row_guard(settings: GuardSettings) -> RowGuard | None:
    """The check packing runs on a batch's counts; None when the guard is off."""
    if not settings.on:
        return None

    def check(rows: Mapping[str, int], deleted: Mapping[str, int]) -> None:
        found = offences(rows, deleted, settings)
        if found:
            raise GuardError(found)

    return check


def percent(value: float) -> str:
    """A share for people: `75%`, `33.33%`."""
    return f"{value:.2f}".rstrip("0").rstrip(".") + "%"


def describe(found: Sequence[Offence]) -> str:
    """The offending files in words: `enrollments.csv has 150 of its 200 rows deleted (75%)`."""
    first, *rest = found
    words = (
        f"{quoted(first.file)} has {first.deleted:,} of its {first.rows:,} rows "
        f"deleted ({percent(first.share)})"
    )
    for other in rest:
        words += (
            f" and {quoted(other.file)} {other.deleted:,} of {other.rows:,} "
            f"({percent(other.share)})"
        )
    return words


def held_reason(batch: str, group: str, found: Sequence[Offence], config_option: str = "") -> str:
    """Why a batch is held, and what a person can do, in one sentence; `config_option` is
    the ` --config PATH` of the command to run ("" for the default config file)."""
    limit = found[0].limit
    return (
        f"{describe(found)}, more than max_deleted_percent ({percent(limit)}) lets through, "
        f"so the batch waits in held/{batch}: if the deletions are meant, send it with "
        f"`dropd release{config_option} {group} {batch}`; if not, fix the export and remove "
        "that folder"
    )
