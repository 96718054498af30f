"""What a reload (SIGHUP) changes: groups added, removed, or changed in place; and the keys it
cannot change, which keep their running value until dropd is restarted."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from daemon.config.keys import Section, settings_of
from daemon.config.model import SECTIONS, Config


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    added: tuple[str, ...]  # start these groups
    removed: tuple[str, ...]  # stop these after the batch they have in flight
    kept: tuple[str, ...]  # same folder: take the new settings in place, keep their line


def plan_reload(old: Config, new: Config) -> ReloadPlan:
    """Compare two configs by group; a group whose folder moved is removed and added again."""
    moved = {
        k
        for k in old.groups.keys() & new.groups.keys()
        if old.groups[k].folder != new.groups[k].folder
    }
    added = [k for k in new.groups if k not in old.groups or k in moved]
    removed = [k for k in old.groups if k not in new.groups or k in moved]
    kept = [k for k in new.groups if k in old.groups and k not in moved]
    return ReloadPlan(tuple(added), tuple(removed), tuple(kept))


def keep_restart_keys(old: Config, new: Config) -> tuple[Config, tuple[str, ...]]:
    """`new`, but with the running value of every changed key that only a restart changes
    (marked so in the settings), and the paths of those keys ("daemon.state_dir")."""
    changed: list[str] = []
    tables: dict[str, Any] = {}
    for section in SECTIONS:
        names = _restart_names(section)
        if not names:
            continue
        before, after = getattr(old, section.kind), getattr(new, section.kind)
        if section.kind == section.header:  # one table, such as [daemon]
            tables[section.kind] = _keep(before, after, names, section.kind, changed)
        else:  # a table a NAME, such as [groups.NAME]: only one that was there before
            tables[section.kind] = {
                name: _keep(before[name], table, names, f"{section.kind}.{name}", changed)
                if name in before
                else table
                for name, table in after.items()
            }
    return dataclasses.replace(new, **tables), tuple(changed)


def _restart_names(section: Section) -> list[str]:
    return [s.name for s in settings_of(section.settings) if s.key.restart]


def _keep(before: Any, after: Any, names: list[str], path: str, changed: list[str]) -> Any:
    if before is None or after is None:  # a table that may be left out
        return after
    kept = {n: getattr(before, n) for n in names if getattr(before, n) != getattr(after, n)}
    changed += [f"{path}.{n}" for n in kept]
    return dataclasses.replace(after, **kept) if kept else after
