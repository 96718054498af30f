"""`dropd check`: a dry run of intake, validation and the guard on files or a folder.

Nothing is moved, renamed, written or sent: files are only read, through the opener that
refuses links and devices. What the dry run assumes, as it cannot watch the files arrive:
every file is complete, and the files it takes arrive together, so they form one batch in
the order given (a folder's files by name), a name already in the batch starting the next
one, as intake does; a ZIP is a batch of its own. `max_upload_bytes` is not tried, as that needs
the ZIP built. The settings are those of `--group`, else of the group whose folder holds
the paths, else the defaults (for the guard, too).
"""

from __future__ import annotations

import argparse
import enum
import os
import stat
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from daemon.base.errors import ConfigError
from daemon.base.names import quoted, shown
from daemon.checks.csv.check import Splitter
from daemon.checks.csv.count import zip_counts
from daemon.checks.csv.scanhelper import scan_splitter
from daemon.checks.dropped_zip import zip_problems
from daemon.checks.guard import GuardSettings, describe, offences, percent
from daemon.checks.validate import Finding, validate_batch
from daemon.config.load import load_config
from daemon.config.model import Config, DoneMarkers, Group
from daemon.intake.readiness import FileKind, classify, markers_for, unreadable

DEFAULTS = Group(key="", environment="", folder=Path(), group_name="", friendly_name="")
# dropd's own records, in the folders of batches it filed (sent/, failed/, held/).
_RECORDS = ("receipt", "error", "held")


class UsageError(Exception):
    """The command line cannot be carried out (exit 2); the message says why."""


class Fate(enum.Enum):
    SENT = "would be sent"
    FAILED = "would FAIL"
    HELD = "would be HELD by the guard; nothing of it would be sent"


@dataclass(slots=True)
class BatchPlan:
    """One batch the files would form, and what would happen to it."""

    number: int
    paths: list[Path]
    fate: Fate = Fate.SENT
    notes: list[str] = field(default_factory=list)  # problems, the guard, warnings
    figures: dict[str, str] = field(default_factory=dict)  # file name -> kind and rows


@dataclass(slots=True)
class Plan:
    """What dropd would do with every file given."""

    files: list[tuple[Path, str]] = field(default_factory=list)  # path, what happens to it
    batches: list[BatchPlan] = field(default_factory=list)
    failing_files: int = 0  # files that fail on their own (step intake)

    def exit_code(self) -> int:
        """1 if anything would fail or be held, else 0."""
        troubled = any(b.fate is not Fate.SENT for b in self.batches)
        return 1 if troubled or self.failing_files else 0


def run(args: argparse.Namespace) -> int:
    """`dropd check`, as the command line asked for it."""
    return check_command(args.config, args.paths, args.group)


def check_command(config_path: Path | None, paths: Sequence[Path], group_key: str | None) -> int:
    """`dropd check`: print what would happen; 0, 1 if anything fails or is held, 2 on usage."""
    try:
        config = load_config(config_path) if config_path is not None else None
        group, where = settings_for(config, paths, group_key)
        files = gather(paths)
    except ConfigError as exc:
        print("\n".join(exc.problems), file=sys.stderr)
        return 2
    except UsageError as exc:
        print(f"dropd check: {exc}", file=sys.stderr)
        return 2
    helpers, splitter = scan_splitter()
    try:
        plan = make_plan(files, group, splitter)
    finally:
        helpers.close()
    # A name that is not UTF-8 is shown with its odd bytes as \xNN, as in every record.
    print("\n".join(shown(line) for line in render(plan, group, where)))
    return plan.exit_code()


def settings_for(
    config: Config | None, paths: Sequence[Path], group_key: str | None
) -> tuple[Group, str]:
    """The group whose settings apply, and how it was chosen. Raises UsageError."""
    groups = config.groups if config is not None else {}
    if group_key is not None:
        if group_key not in groups:
            known = ", ".join(sorted(groups)) or "none"
            raise UsageError(f"there is no group {group_key!r} (groups: {known})")
        return groups[group_key], f"group {group_key} (--group)"
    holders = {
        key
        for path in paths
        for key, group in groups.items()
        if Path(os.path.abspath(path)).is_relative_to(group.folder)
    }
    if len(holders) > 1:
        raise UsageError(
            f"the paths are in the folders of groups {', '.join(sorted(holders))}; check one "
            "group's files at a time, or choose the settings with --group"
        )
    if holders:
        key = holders.pop()
        return groups[key], f"group {key}, whose folder holds them"
    return DEFAULTS, "the defaults (no group's folder holds the paths)"


def gather(paths: Sequence[Path]) -> list[Path]:
    """The files to look at: each file given, and the top level of each folder given.

    Raises UsageError if a path does not exist.
    """
    files: list[Path] = []
    for path in paths:
        try:
            info = path.lstat()
        except OSError as exc:
            raise UsageError(f"{path} cannot be looked at ({exc.strerror}); fix the path") from exc
        if stat.S_ISDIR(info.st_mode):
            files += _folder_files(path)
        else:
            files.append(path)
    return files


def _folder_files(folder: Path) -> list[Path]:
    # Folders inside (sent/, failed/, held/, .dropd/) are never read, as by the daemon.
    with os.scandir(folder) as entries:
        names = sorted(e.name for e in entries if not e.is_dir(follow_symlinks=False))
    filed = folder.parent.name in ("failed", "held") or folder.parent.parent.name == "sent"
    return [folder / n for n in names if not (filed and _is_record(n))]


def _is_record(name: str) -> bool:
    return any(name in (f"{stem}.json", f"{stem}.dropd.json") for stem in _RECORDS)


def make_plan(files: list[Path], group: Group, splitter: Splitter | None = None) -> Plan:
    """Decide, as the daemon would, what happens to each file and batch."""
    plan = Plan()
    names = [p.name for p in files]
    markers = [n for n in names if classify(n) is FileKind.MARKER]
    batched: list[Path] = []
    for path in files:
        what = _intake(path, markers, names, group)
        if what is None:
            batched.append(path)
            continue
        plan.files.append((path, what))
        plan.failing_files += what.startswith("FAILS")
    zips = [p for p in batched if classify(p.name) is FileKind.ZIP]
    plan.batches = [*_csv_batches([p for p in batched if p not in zips]), *map(_one, zips)]
    for number, batch in enumerate(plan.batches, start=1):
        batch.number = number
        _judge(batch, group, splitter)
        plan.files += [(p, f"batch {number}{batch.figures.get(p.name, '')}") for p in batch.paths]
    order = {path: index for index, path in enumerate(files)}
    plan.files.sort(key=lambda item: order[item[0]])
    return plan


def _intake(path: Path, markers: list[str], names: list[str], group: Group) -> str | None:
    """What intake does with `path`; None when it joins a batch."""
    kind = classify(path.name)
    if kind is None:
        return "not taken: dotfiles and temporary names (~*, *.tmp, *.part, ...) never are"
    try:
        if not stat.S_ISREG(path.lstat().st_mode):
            return "not taken: links, FIFOs and devices are never read"
    except OSError as exc:
        return f"not taken: it cannot be looked at ({exc.strerror})"
    if kind is FileKind.MARKER:
        owners = [n for n in names if n not in markers and path.name in markers_for(n, markers)]
        if owners:
            return f"marker of {owners[0]}: travels with it to sent/ or failed/, never uploaded"
        return "a marker with no file beside it: dropd leaves it alone"
    if kind is FileKind.OTHER:
        return (
            f"FAILS alone at step intake: {quoted(path.name)} is not a file dropd uploads (only "
            "*.csv, message.properties and *.zip are); rename it or drop it elsewhere"
        )
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        why = unreadable(folder, path.name)
    finally:
        os.close(folder)
    if why is not None:
        return f"FAILS alone at step intake: {why}"
    if group.done_markers is DoneMarkers.REQUIRED and not markers_for(path.name, markers):
        return 'not taken yet: it waits for its .done marker (done_markers = "required")'
    return None


def _csv_batches(paths: list[Path]) -> list[BatchPlan]:
    # As intake does: a file with the name of one already in the batch starts the next batch.
    batches: list[BatchPlan] = []
    for path in paths:
        if not batches or path.name in {p.name for p in batches[-1].paths}:
            batches.append(BatchPlan(0, []))
        batches[-1].paths.append(path)
    return batches


def _one(path: Path) -> BatchPlan:
    return BatchPlan(0, [path])


def _judge(batch: BatchPlan, group: Group, splitter: Splitter | None) -> None:
    settings = GuardSettings.of(group)
    if len(batch.paths) == 1 and classify(batch.paths[0].name) is FileKind.ZIP:
        problems = [Finding(batch.paths[0].name, None, p) for p in zip_problems(batch.paths[0])]
        warnings: list[Finding] = []
        rows, deleted = ({}, {}) if problems else zip_counts(batch.paths[0])
    else:
        report = validate_batch(batch.paths, group.validation, count=settings.on, splitter=splitter)
        problems, warnings = list(report.problems), list(report.warnings)
        rows, deleted = dict(report.rows), dict(report.deleted)
        batch.figures = {
            name: f": {kind}" + _rows(rows.get(name), deleted.get(name))
            for name, kind in report.kinds.items()
        }
    found = [] if problems else offences(rows, deleted, settings)
    if problems:
        batch.fate = Fate.FAILED
        batch.notes += [f"problem: {_finding(f)}" for f in problems]
    elif found:
        batch.fate = Fate.HELD
        limit = percent(settings.max_deleted_percent)
        batch.notes.append(f"guard: {describe(found)}, more than {limit} (max_deleted_percent)")
    batch.notes += [f"warning: {_finding(f)}" for f in warnings]


def _rows(rows: int | None, deleted: int | None) -> str:
    if rows is None:
        return ""
    text = f", {rows:,} rows"
    if deleted is not None:
        share = f" ({percent(deleted * 100 / rows)})" if rows else ""
        text += f", {deleted:,} deleted{share}"
    return text


def _finding(finding: Finding) -> str:
    # A message names its line itself ("line 7 has 4 fields, ...").
    return f"{finding.file}: {finding.message}"


def render(plan: Plan, group: Group, where: str) -> list[str]:
    """The plan for a person: the settings, each file, each batch, the result."""
    guard = (
        f"max_deleted_percent {percent(group.max_deleted_percent)} of at least "
        f"{group.min_rows_for_guard:,} rows"
        if group.max_deleted_percent
        else "the guard off (max_deleted_percent 0)"
    )
    lines = [
        f"settings: {where}: validation {group.validation.value}, done_markers "
        f"{group.done_markers.value}, {guard}",
        "assumed: every file is complete, and they arrive together: one batch, split where "
        "a name repeats; a ZIP goes alone",
        "",
    ]
    folders = {path.parent for path, _ in plan.files}
    width = max((len(_label(p, folders)) for p, _ in plan.files), default=0)
    lines += [f"{_label(path, folders):<{width}}  {what}" for path, what in plan.files]
    for batch in plan.batches:
        listed = ", ".join(p.name for p in batch.paths)
        lines += ["", f"batch {batch.number} ({listed}): {batch.fate.value}"]
        lines += [f"  {note}" for note in batch.notes]
    lines += ["", _summary(plan)]
    return lines


def _label(path: Path, folders: set[Path]) -> str:
    return path.name if len(folders) == 1 else str(path)


def _summary(plan: Plan) -> str:
    counts = {fate: sum(b.fate is fate for b in plan.batches) for fate in Fate}
    parts = [
        f"{counts[Fate.SENT]} batch(es) would be sent",
        f"{counts[Fate.HELD]} held",
        f"{counts[Fate.FAILED]} failed",
        f"{plan.failing_files} file(s) failing alone",
    ]
    return f"result: {', '.join(parts)}: exit {plan.exit_code()}"
