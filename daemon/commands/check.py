"""`dropd check`: a dry run of intake, validation and the guard on files or a folder.

Nothing is moved, renamed, written or sent: files are only read, through the opener that
refuses links and devices (a dropped ZIP's entries are unpacked, as the daemon unpacks them,
into a temporary folder removed after).
What the dry run assumes, as it cannot watch the files arrive:
every file is complete, and the files it takes arrive together, so they form one batch in
the order given (a folder's files by name), a name already in the batch starting the next
one, as intake does; a ZIP is a batch of its own. With `max_upload_bytes`, a batch that would
be sent is zipped as packing zips it, into a sink that only counts bytes, to say whether it
would go up whole, cut into parts, or fail as one file cannot fit. The settings are those of
`--group`, else of the group whose folder holds the paths, else the defaults (for the guard,
too).
"""

from __future__ import annotations

import argparse
import enum
import os
import stat
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from daemon.archive.writer import measure_zip
from daemon.base.errors import ConfigError, OversizeError, SourceError, SpoolError, StillWritten
from daemon.base.names import quoted, shown
from daemon.checks.dropped_zip import Unpacking, unpack_zip
from daemon.checks.guard import GuardSettings, describe, offences, percent
from daemon.checks.validate import Decoding, Finding, validate_batch
from daemon.config.load import load_config
from daemon.config.model import Config, DoneMarkers, Group
from daemon.delivery.packing import zip_entries
from daemon.delivery.parts import Sized, TooBig, plan_parts, server_order
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
    kinds: dict[str, str] = field(default_factory=dict)  # file name -> its kind, once checked


@dataclass(slots=True)
class Plan:
    """What dropd would do with every file given."""

    files: list[tuple[Path, str]] = field(default_factory=list)  # path, what happens to it
    batches: list[BatchPlan] = field(default_factory=list)
    failing_files: int = 0  # files that fail on their own (step intake)

    def exit_code(self) -> int:
        """1 if anything would fail or be held, or nothing at all would be sent; else 0."""
        troubled = any(b.fate is not Fate.SENT for b in self.batches)
        return 1 if troubled or self.failing_files or not self.batches else 0

    def nothing_sent(self) -> str:
        """Why nothing at all would be sent; "" when some batch would be."""
        if self.batches:
            return ""
        waiting = sum(what.startswith("not taken yet") for _, what in self.files)
        if waiting:
            return (
                f"nothing would be sent: {waiting} file(s) wait for their .done marker "
                '(done_markers = "required"); drop the markers, or check with them'
            )
        if not self.files:
            return "nothing would be sent: there is no file to look at"
        return "nothing would be sent: no file given is one dropd uploads"


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
    plan = make_plan(files, group)
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


def make_plan(files: list[Path], group: Group) -> Plan:
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
        _judge(batch, group)
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


def _judge(batch: BatchPlan, group: Group) -> None:
    if len(batch.paths) == 1 and classify(batch.paths[0].name) is FileKind.ZIP:
        # Unpacked as the daemon unpacks it, into a folder of its own, removed after.
        with tempfile.TemporaryDirectory(prefix="dropd-check-") as scratch:
            if (unpacked := _unpack(batch, Path(scratch))) is not None:
                _judge_files(batch, unpacked, group)
        return
    _judge_files(batch, batch.paths, group)


def _unpack(batch: BatchPlan, folder: Path) -> list[Path] | None:
    """The files of the batch's dropped ZIP, unpacked into `folder`; None (and the batch
    fails, saying why) when the daemon would fail it before checking them."""
    dropped = batch.paths[0]
    try:
        unpacking = unpack_zip(dropped, folder)
    except SpoolError as exc:
        unpacking = Unpacking(problems=(f"it cannot be unpacked to be checked here ({exc})",))
    if unpacking.left_out:
        listed = ", ".join(quoted(p) for p in unpacking.left_out)
        batch.notes.append(f"left out: {listed} (macOS's own files, never uploaded)")
    if unpacking.twice is not None or unpacking.problems:
        batch.fate = Fate.FAILED
        batch.notes += [f"problem: {dropped.name}: {p}" for p in unpacking.problems]
        if unpacking.twice is not None:
            batch.notes.append(f"problem (step intake): {dropped.name}: {unpacking.twice}")
        return None
    moved = [f"{quoted(e.path)} as {e.name}" for e in unpacking.entries if e.path != e.name]
    if moved:
        batch.notes.append(f"unpacked by base name, as the server does: {', '.join(moved)}")
    return [folder / e.name for e in unpacking.entries]


def _judge_files(batch: BatchPlan, paths: list[Path], group: Group) -> None:
    settings = GuardSettings.of(group)
    report = validate_batch(
        paths,
        group.validation,
        count=settings.on,
        decoding=Decoding.of(group),
    )
    problems, warnings = list(report.problems), list(report.warnings)
    rows, deleted = dict(report.rows), dict(report.deleted)
    batch.kinds = dict(report.kinds)
    batch.figures = {
        name: f": {kind}" + _rows(rows.get(name), deleted.get(name))
        for name, kind in report.kinds.items()
    }
    if paths != batch.paths:  # a ZIP's: its line lists the files in it
        inside = "; ".join(f"{name}{figure}" for name, figure in batch.figures.items())
        batch.figures = {batch.paths[0].name: f": a ZIP of {inside}"}
    found = [] if problems else offences(rows, deleted, settings)
    if problems:
        batch.fate = Fate.FAILED
        batch.notes += [f"problem: {_finding(f)}" for f in problems]
    elif found:
        batch.fate = Fate.HELD
        limit = percent(settings.max_deleted_percent)
        batch.notes.append(f"guard: {describe(found)}, more than {limit} (max_deleted_percent)")
    batch.notes += [f"warning: {_finding(f)}" for f in warnings]
    if batch.fate is Fate.SENT and group.max_upload_bytes and batch.kinds:
        _measure(batch, paths, group.max_upload_bytes, group.encoding)


def _measure(batch: BatchPlan, paths: list[Path], limit: int, encoding: str) -> None:
    """Zip the batch as packing would, counting bytes only, and cut it as packing would."""
    names = server_order([p.name for p in paths], batch.kinds)
    folders = {p.parent for p in paths}
    if len(folders) != 1:  # packing zips the files of one spool folder
        batch.notes.append("upload: not measured, as its files are in several folders")
        return
    try:
        measured = measure_zip(zip_entries(folders.pop(), names, encoding))
    except (SourceError, StillWritten) as exc:
        batch.notes.append(f"upload: not measured: {exc}")
        return
    if measured.bytes <= limit:
        batch.notes.append(
            f"upload: one ZIP of {measured.bytes:,} bytes, within max_upload_bytes ({limit:,})"
        )
        return
    try:
        parts = plan_parts([Sized(e.source, e.compressed) for e in measured.entries], limit)
    except TooBig as exc:
        batch.fate = Fate.FAILED
        batch.notes.append(f"problem: {OversizeError(exc.name, exc.needs, limit)}")
        return
    listed = "; ".join(f"{n}: {', '.join(part)}" for n, part in enumerate(parts, start=1))
    batch.notes.append(
        f"upload: its ZIP would be {measured.bytes:,} bytes, over max_upload_bytes "
        f"({limit:,}): it goes up in {len(parts)} parts, in the server's order ({listed})"
    )


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
    limit = (
        f"max_upload_bytes {group.max_upload_bytes:,}"
        if group.max_upload_bytes
        else "no max_upload_bytes"
    )
    lines = [
        f"settings: {where}: validation {group.validation.value}, done_markers "
        f"{group.done_markers.value}, {guard}, {limit}",
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
    if why := plan.nothing_sent():
        lines += ["", why]
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
