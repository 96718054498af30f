"""What a reload (SIGHUP) changes: groups added, removed, or changed in place."""

from __future__ import annotations

from dataclasses import dataclass

from daemon.config.model import Config


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
