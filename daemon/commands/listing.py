"""`dropd list`: the batches of one group or of all, newest first: waiting, sent, failed and
held, each with its files, when, and why.

Exit codes: 0 when every group's folder could be read (no batch at all included); 1 when a
group's folder cannot be (the others are still listed); 2 on a bad config or an unknown
group.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from daemon.base.errors import ConfigError, DropdError
from daemon.config.load import load_config
from daemon.config.lookup import group_named
from daemon.config.model import Group
from daemon.observe.batches import Batch, Place, list_batches

REASON_WIDTH = 100  # characters of a reason in the table; `dropd show` has the rest


def run(args: argparse.Namespace) -> int:
    """`dropd list`, as the command line asked for it."""
    try:
        config = load_config(args.config)
        groups = [group_named(config, args.group)] if args.group else list(config.groups.values())
    except ConfigError as exc:
        print("\n".join(exc.problems), file=sys.stderr)
        return 2
    state = Place(args.state) if args.state else None
    batches: list[Batch] = []
    unreadable = False
    for group in groups:
        try:
            found = list_batches(group.folder, group.key)
        except DropdError as exc:
            print(f"dropd list: group {group.key}: {exc}", file=sys.stderr)
            unreadable = True
            continue
        batches += [b for b in found if state is None or b.place is state]
    batches.sort(key=lambda b: (b.moment, b.batch), reverse=True)
    if args.json:
        print(json.dumps([batch_json(b) for b in batches], indent=2, ensure_ascii=False))
    else:
        print("\n".join(render(batches, groups, state)))
    return 1 if unreadable else 0


def batch_json(batch: Batch) -> dict[str, Any]:
    """One batch as `dropd list --json` prints it."""
    return {
        "group": batch.group,
        "batch": batch.batch,
        "state": batch.place.value,
        "files": [f.name for f in batch.files],
        "files_not_listed": batch.more_files,
        "when": batch.when,
        "step": batch.step,
        "reason": batch.reason,
        "folder": str(batch.folder),
    }


def render(batches: Sequence[Batch], groups: Sequence[Group], state: Place | None) -> list[str]:
    """The table for a person, or a line saying there is nothing to list."""
    if not batches:
        which = f"{state.value} " if state else ""
        where = f"group {groups[0].key}" if len(groups) == 1 else "any group"
        return [f"no {which}batches in {where}"]
    rows = [("GROUP", "BATCH", "STATE", "FILES", "WHEN", "REASON")]
    rows += [
        (
            b.group,
            b.batch,
            b.place.value,
            str(len(b.files) + b.more_files),
            b.when or "-",
            _short(f"{b.step}: {b.reason}" if b.place is Place.FAILED and b.step else b.reason),
        )
        for b in batches
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    return ["  ".join([*map(str.ljust, row[:5], widths), row[5]]).rstrip() for row in rows]


def _short(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= REASON_WIDTH else line[: REASON_WIDTH - 1] + "…"
