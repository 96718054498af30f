"""Packing a claimed batch into the ZIP (or ZIPs, cut to `max_upload_bytes`) it goes up as."""

from __future__ import annotations

import contextvars
import functools
import os
import threading
import zipfile
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from types import TracebackType

import structlog

from daemon.archive.writer import (
    BuiltZip,
    SourceDigest,
    ZipEntry,
    build_zip,
    file_sha256,
)
from daemon.base.errors import (
    ArchiveError,
    Finding,
    OversizeError,
    SourceError,
    StillWritten,
    ValidationError,
)
from daemon.base.names import entry_name, is_plain, quoted
from daemon.checks.csv import fast as csvfast
from daemon.checks.csv.check import Splitter, csv_kind
from daemon.checks.csv.count import zip_counts
from daemon.checks.dropped_zip import duplicate_entries, zip_problems
from daemon.checks.guard import RowGuard
from daemon.checks.validate import validate_batch
from daemon.config.model import Validation
from daemon.delivery.parts import PROPERTIES, Sized, TooBig, plan_parts, server_order
from daemon.intake.readiness import FileKind, classify, unreadable
from daemon.spool.manifest import FileRecord, Manifest, Part, ZipSummary
from daemon.spool.store import Spool

log = structlog.get_logger()


def pack(
    spool: Spool,
    manifest: Manifest,
    limit: int,
    validation: Validation,
    guard: RowGuard | None = None,
    splitter: Splitter | None = None,
) -> None:
    """Check the batch's files as the server would (and with `guard`, what they delete), then
    build its ZIP part(s); record files, parts and warnings in `manifest` (not saved).

    Raises ValidationError if the server would refuse the files, GuardError (from `guard`)
    if they delete too much, OversizeError if one file cannot fit in `limit` bytes,
    ArchiveError if the ZIP cannot be written.
    """
    _announce(csvfast.ROWSCAN is not None)
    files_dir = spool.files_dir(manifest.batch)
    names = spool.file_names(manifest.batch)
    kinds = recorded_kinds(manifest, names)
    markers = [n for n in names if kinds[n] == FileKind.MARKER.value]
    data = [n for n in names if n not in markers]
    _refuse_strangers(data, kinds)
    sent = {p.files for p in manifest.parts if p.sent}
    if kinds.get(data[0] if data else "") == FileKind.ZIP.value:
        twice = duplicate_entries(files_dir / data[0])
        if twice is not None:
            raise SourceError(data[0], f"{quoted(data[0])}: {twice}")
        problems = zip_problems(files_dir / data[0])
        if problems:
            raise ValidationError([Finding(data[0], None, p) for p in problems])
        if guard is not None:
            guard(*zip_counts(files_dir / data[0]))
        built = _ready_made(files_dir / data[0], spool.zip_path(manifest.batch))
        parts = [_part(1, built, [data[0]], _zip_has_notification(built.path))]
        sources = built.sources
    else:
        _refuse_unreadable(files_dir, data)
        with _ZipAhead(spool, manifest.batch, data) as ahead:
            report = validate_batch(
                [files_dir / n for n in data], validation, count=bool(guard), splitter=splitter
            )
            if report.problems:
                raise ValidationError(report.problems)
            manifest.warnings = report.warnings
            if guard is not None:
                guard(report.rows, report.deleted)
            whole, ordered = ahead.result(report.kinds)
        parts, sources = _build(spool, manifest.batch, whole, ordered, limit)
    _refuse_changed(manifest, sources)
    manifest.files = _records(sources, markers, files_dir)
    manifest.parts = [replace(p, sent=p.files in sent) for p in parts]
    manifest.zip = ZipSummary.of(parts)


def recorded_kinds(manifest: Manifest, names: list[str]) -> dict[str, str]:
    """The kind of each file in the batch as intake wrote it before the claim (a file listed
    by an older dropd: by its name)."""
    recorded = {f.name: f.kind for f in manifest.files}
    return {n: recorded.get(n) or (classify(n) or FileKind.OTHER).value for n in names}


def _refuse_strangers(data: list[str], kinds: Mapping[str, str]) -> None:
    # Intake fails such files alone; a batch that holds one anyway sends nothing of it.
    for name in data:
        if kinds[name] not in (FileKind.CSV.value, FileKind.PROPERTIES.value, FileKind.ZIP.value):
            raise SourceError(
                name, f"{quoted(name)} is not a file dropd uploads; drop it elsewhere"
            )
    if len(data) > 1 and FileKind.ZIP.value in (kinds[n] for n in data):
        zipped = next(n for n in data if kinds[n] == FileKind.ZIP.value)
        raise SourceError(zipped, f"{quoted(zipped)} is a ZIP, which goes up in a batch of its own")


def _refuse_unreadable(files_dir: Path, data: list[str]) -> None:
    # A file that cannot be read fails the batch at step intake, naming it, its owner and
    # mode as intake would, before any check reads it (and words it as a problem of its
    # contents).
    folder = os.open(files_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name in data:
            if (why := unreadable(folder, name)) is not None:
                raise SourceError(name, why)
    finally:
        os.close(folder)


def _refuse_changed(manifest: Manifest, sources: tuple[SourceDigest, ...]) -> None:
    # A file that changed after its claim is still being written: what was zipped may be
    # half of it. Its new size and time are kept, so the next try sees whether it is still.
    claimed = {f.name: f for f in manifest.files}
    changed = [
        s
        for s in sources
        if (record := claimed.get(s.name)) is not None
        and record.mtime_ns
        and (record.bytes, record.mtime_ns) != (s.bytes, s.mtime_ns)
    ]
    for source in changed:
        record = claimed[source.name]
        record.bytes, record.mtime_ns = source.bytes, source.mtime_ns
    if changed:
        name = changed[0].name
        raise StillWritten(
            name,
            f"{quoted(name)} changed after dropd claimed it: a writer was still writing it; "
            "nothing went up, and dropd zips the batch again once the file is still",
        )


@functools.cache
def _announce(row_scanner: bool) -> None:
    """Say once how rows are checked: with the compiled row scanner, or in Python only."""
    log.info("csv_checks", row_scanner=row_scanner)


class _ZipAhead:
    """The batch's whole ZIP, built in a thread while its files are checked.

    Deflate, CRC-32 and SHA-256 run without the GIL, so on two cores the ZIP costs little
    time beyond the checks. The entries' order comes from the CSVs' header lines, read
    first; the checks' kinds confirm it (or the ZIP is built again). Whatever ends the
    checks early (a problem, the guard) stops the ZIP and removes it: a batch that fails
    its checks has no ZIP to send.
    """

    def __init__(self, spool: Spool, batch: str, data: list[str]) -> None:
        self.files_dir, self.target, self.data = spool.files_dir(batch), spool.zip_path(batch), data
        kinds = {n: csv_kind(self.files_dir / n) for n in data if n != PROPERTIES}
        self.ordered = server_order(data, kinds)
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zip")
        self._future = self._pool.submit(
            contextvars.copy_context().run,  # its log lines carry the group and batch
            build_zip,
            _entries(self.files_dir, self.ordered),
            self.target,
            stop=self._stop,
        )

    def __enter__(self) -> _ZipAhead:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is not None:
            self._stop.set()
            self._future.exception()  # waits for it; its own error matters no more
            self.target.unlink(missing_ok=True)
        self._pool.shutdown()

    def result(self, kinds: Mapping[str, str]) -> tuple[BuiltZip, list[str]]:
        """The whole ZIP, and its entries in the server's order.

        Raises ArchiveError if the ZIP cannot be written.
        """
        built = self._future.result()
        ordered = server_order(self.data, kinds)
        if ordered != self.ordered:  # a header the first look read otherwise
            built = build_zip(_entries(self.files_dir, ordered), self.target)
        return built, ordered


def _build(
    spool: Spool, batch: str, whole: BuiltZip, ordered: list[str], limit: int
) -> tuple[list[Part], tuple[SourceDigest, ...]]:
    files_dir = spool.files_dir(batch)
    if not limit or whole.bytes <= limit:
        return [_part(1, whole, ordered, PROPERTIES in ordered)], whole.sources
    with zipfile.ZipFile(whole.path) as archive:
        sized = [Sized(i.filename, i.compress_size) for i in archive.infolist()]
    try:
        plan = plan_parts(sized, limit)
    except TooBig as exc:
        raise OversizeError(exc.name, exc.needs, limit) from exc
    whole.path.unlink()
    parts = []
    for number, names in enumerate(plan, start=1):
        built = build_zip(_entries(files_dir, names), spool.part_path(batch, number))
        if built.bytes > limit:  # the plan's overheads are generous: this means a bug
            raise ArchiveError(
                built.path,
                f"part {number} came out at {built.bytes} bytes, over the {limit} planned",
            )
        parts.append(_part(number, built, names, PROPERTIES in names))
    return parts, whole.sources


def _entries(files_dir: Path, names: list[str]) -> list[ZipEntry]:
    # The server reads a byte-order mark as part of the first header name: strip it. A name
    # that is not UTF-8 gets an entry name the server's Java can read.
    taken = {n for n in names if is_plain(n)}
    entries = []
    for name in names:
        entry = entry_name(name, taken)
        taken.add(entry)
        entries.append(ZipEntry(files_dir / name, entry, strip_bom=name.lower().endswith(".csv")))
    return entries


def _part(number: int, built: BuiltZip, names: list[str], custom: bool) -> Part:
    return Part(
        number=number,
        zip=built.path.name,
        files=tuple(names),
        entries={s.name: s.entry for s in built.sources if s.entry and s.entry != s.name},
        bytes=built.bytes,
        sha256=built.sha256,
        custom_notification=custom,
        bom_removed=tuple(s.name for s in built.sources if s.bom_stripped),
    )


def _ready_made(source: Path, target: Path) -> BuiltZip:
    # A dropped ZIP goes up as it came: link it where the upload expects its ZIP.
    target.unlink(missing_ok=True)
    try:
        target.hardlink_to(source)
    except OSError as exc:
        raise ArchiveError(target, exc.strerror or str(exc)) from exc
    info, digest = source.stat(), file_sha256(source)
    size, mtime = info.st_size, info.st_mtime_ns
    sources = (SourceDigest(source.name, size, digest, False, source.name, mtime),)
    return BuiltZip(target, size, digest, sources)


def _zip_has_notification(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return any(Path(n).name.lower() == PROPERTIES for n in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False  # the server will say what is wrong with it


def _records(
    sources: tuple[SourceDigest, ...], markers: list[str], files_dir: Path
) -> list[FileRecord]:
    # The zipped files were hashed as they were read; only the markers are read here.
    zipped = [
        FileRecord(s.name, s.bytes, s.sha256, _kind(s.name), mtime_ns=s.mtime_ns) for s in sources
    ]
    return zipped + describe_files([files_dir / name for name in markers])


def describe_files(
    paths: Iterable[Path], kinds: Mapping[str, str] | None = None
) -> list[FileRecord]:
    """Name, size, SHA-256 and kind of each file, read from disk; a file that cannot be read
    (the reason its batch failed, maybe) is listed with its size and no SHA-256."""
    records = []
    for path in paths:
        try:
            size = os.stat(path, follow_symlinks=False).st_size
        except OSError:
            size = 0
        try:
            digest = file_sha256(path)
        except OSError:
            digest = ""
        kind = (kinds or {}).get(path.name) or _kind(path.name)
        records.append(FileRecord(path.name, size, digest, kind))
    return records


def _kind(name: str) -> str:
    return (classify(name) or FileKind.OTHER).value
