"""Packing a claimed batch into the ZIP (or ZIPs, cut to `max_upload_bytes`) it goes up as."""

from __future__ import annotations

import contextlib
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
)
from daemon.base.errors import (
    ArchiveError,
    Finding,
    OversizeError,
    SourceError,
    SpoolError,
    StillWritten,
    ValidationError,
)
from daemon.base.names import entry_name, is_plain, quoted
from daemon.base.regular import file_sha256
from daemon.base.textcodec import UTF8
from daemon.checks.csv import check as csvcheck
from daemon.checks.csv.check import csv_kind
from daemon.checks.decoding import UTF8_FILES, Decoding
from daemon.checks.dropped_zip import unpack_zip
from daemon.checks.guard import RowGuard
from daemon.checks.validate import is_properties, properties_encoding, validate_batch
from daemon.config.model import Validation
from daemon.delivery.parts import Sized, TooBig, plan_parts, server_order
from daemon.intake.readiness import FileKind, classify, unreadable
from daemon.spool.manifest import (
    FileRecord,
    Manifest,
    Part,
    Unpacked,
    UnpackedEntry,
    ZipSummary,
)
from daemon.spool.store import Spool

log = structlog.get_logger()


def pack(
    spool: Spool,
    manifest: Manifest,
    limit: int,
    validation: Validation,
    guard: RowGuard | None = None,
    decoding: Decoding = UTF8_FILES,
) -> None:
    """Check the batch's files as the server would (and with `guard`, what they delete), then
    build its ZIP part(s); record files, parts and warnings in `manifest` (not saved). The
    files are read in `decoding`, the group's `encoding`, and go up in UTF-8.

    Raises ValidationError if the server would refuse the files, GuardError (from `guard`)
    if they delete too much, OversizeError if one file cannot fit in `limit` bytes,
    ArchiveError if the ZIP cannot be written.
    """
    _announce(csvcheck.ROWSCAN is not None)
    files_dir = spool.files_dir(manifest.batch)
    names = spool.file_names(manifest.batch)
    kinds = recorded_kinds(manifest, names)
    markers = [n for n in names if kinds[n] == FileKind.MARKER.value]
    data = [n for n in names if n not in markers]
    _refuse_strangers(data, kinds)
    sent = {p.files for p in manifest.parts if p.sent}
    # A dropped ZIP's entries are checked and zipped again as loose files, from unpacked/.
    dropped = data[0] if kinds.get(data[0] if data else "") == FileKind.ZIP.value else None
    try:
        if dropped is not None:
            files_dir, data = _unpack(spool, manifest, dropped)
        _refuse_unreadable(files_dir, data)
        with _ZipAhead(spool, manifest.batch, data, files_dir, decoding) as ahead:
            report = validate_batch(
                [files_dir / n for n in data],
                validation,
                count=bool(guard),
                decoding=decoding,
            )
            if report.problems:
                raise ValidationError(report.problems)
            manifest.warnings = report.warnings
            if guard is not None:
                guard(report.rows, report.deleted)
            whole, ordered = ahead.result(report.kinds)
        parts, sources = _build(
            spool, manifest.batch, files_dir, whole, ordered, limit, decoding.codec
        )
    finally:
        if dropped is not None:
            with contextlib.suppress(SpoolError):  # the next try clears it, or the filing
                spool.clear_unpacked(manifest.batch)
    if dropped is not None:  # the file dropped, kept as it came, is what the batch files
        manifest.unpacked = _copied(manifest.unpacked, sources)
        sources = (_dropped_digest(spool.files_dir(manifest.batch) / dropped),)
    _refuse_changed(manifest, sources)
    manifest.files = _records(sources, markers, spool.files_dir(manifest.batch))
    manifest.parts = [replace(p, sent=p.files in sent) for p in parts]
    manifest.zip = ZipSummary.of(parts)


def _unpack(spool: Spool, manifest: Manifest, name: str) -> tuple[Path, list[str]]:
    """Unpack the dropped ZIP `name` into the batch's unpacked/, and record what was taken
    and left out in `manifest`; the folder and the names of the files in it.

    Raises SourceError if the ZIP cannot be read or two entries have one base name,
    ValidationError if the server would refuse it as it is, SpoolError.
    """
    files_dir = spool.files_dir(manifest.batch)
    _refuse_unreadable(files_dir, [name])
    folder = spool.fresh_unpacked_dir(manifest.batch)
    unpacking = unpack_zip(files_dir / name, folder)
    entries = tuple(UnpackedEntry(e.path, e.name, e.bytes) for e in unpacking.entries)
    manifest.unpacked = Unpacked(name, entries, unpacking.left_out)
    if unpacking.twice is not None:
        raise SourceError(name, f"{quoted(name)}: {unpacking.twice}")
    if unpacking.problems:
        raise ValidationError([Finding(name, None, p) for p in unpacking.problems])
    return folder, [e.name for e in entries]


def _copied(unpacked: Unpacked | None, sources: tuple[SourceDigest, ...]) -> Unpacked | None:
    """`unpacked`, with what the ZIP's copy of each entry converted, as a loose file has."""
    if unpacked is None:
        return None
    copies = {s.name: s for s in sources}
    entries = tuple(
        replace(e, converted_from=copy.converted_from, escaped=copy.escaped)
        if (copy := copies.get(e.name)) is not None
        else e
        for e in unpacked.entries
    )
    return replace(unpacked, entries=entries)


def _dropped_digest(path: Path) -> SourceDigest:
    info = path.stat()
    digest = file_sha256(path)
    return SourceDigest(path.name, info.st_size, digest, False, path.name, info.st_mtime_ns)


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

    def __init__(
        self,
        spool: Spool,
        batch: str,
        data: list[str],
        files_dir: Path,
        decoding: Decoding = UTF8_FILES,
    ) -> None:
        self.files_dir, self.target, self.data = files_dir, spool.zip_path(batch), data
        self.encoding = decoding.codec
        kinds = {n: csv_kind(self.files_dir / n, decoding) for n in data if not is_properties(n)}
        self.ordered = server_order(data, kinds)
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zip")
        self._future = self._pool.submit(
            contextvars.copy_context().run,  # its log lines carry the group and batch
            build_zip,
            zip_entries(self.files_dir, self.ordered, self.encoding),
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
            built = build_zip(zip_entries(self.files_dir, ordered, self.encoding), self.target)
        return built, ordered


def _build(
    spool: Spool,
    batch: str,
    files_dir: Path,
    whole: BuiltZip,
    ordered: list[str],
    limit: int,
    encoding: str,
) -> tuple[list[Part], tuple[SourceDigest, ...]]:
    if not limit or whole.bytes <= limit:
        return [_part(1, whole, ordered, _has_properties(ordered))], whole.sources
    with zipfile.ZipFile(whole.path) as archive:
        sized = [Sized(i.filename, i.compress_size) for i in archive.infolist()]
    try:
        plan = plan_parts(sized, limit)
    except TooBig as exc:
        raise OversizeError(exc.name, exc.needs, limit) from exc
    whole.path.unlink()
    parts = []
    for number, names in enumerate(plan, start=1):
        built = build_zip(zip_entries(files_dir, names, encoding), spool.part_path(batch, number))
        if built.bytes > limit:  # the plan's overheads are generous: this means a bug
            raise ArchiveError(
                built.path,
                f"part {number} came out at {built.bytes} bytes, over the {limit} planned",
            )
        parts.append(_part(number, built, names, _has_properties(names)))
    return parts, whole.sources


def _has_properties(names: list[str]) -> bool:
    return any(is_properties(name) for name in names)


def zip_entries(files_dir: Path, names: list[str], encoding: str = UTF8) -> list[ZipEntry]:
    """The entries of the ZIP that goes up for the files `names` of `files_dir`, in order;
    the files are in `encoding` (the group's), their copies in UTF-8."""
    # The server reads a byte-order mark as part of the first header name, or of
    # message.properties' first key: strip it. A name
    # that is not UTF-8 gets an entry name the server's Java can read. Java reads
    # message.properties as ISO-8859-1: its text beyond ASCII goes as \uXXXX escapes.
    taken = {n for n in names if is_plain(n)}
    entries = []
    for name in names:
        entry = entry_name(name, taken)
        taken.add(entry)
        entries.append(
            ZipEntry(
                files_dir / name,
                entry,
                strip_bom=name.lower().endswith(".csv") or is_properties(name),
                encoding=(
                    properties_encoding(files_dir / name, encoding)
                    if is_properties(name)
                    else encoding
                ),
                escape_unicode=is_properties(name),
            )
        )
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


def _records(
    sources: tuple[SourceDigest, ...], markers: list[str], files_dir: Path
) -> list[FileRecord]:
    # The zipped files were hashed as they were read; only the markers are read here.
    zipped = [
        FileRecord(
            s.name,
            s.bytes,
            s.sha256,
            _kind(s.name),
            mtime_ns=s.mtime_ns,
            converted_from=s.converted_from,
            escaped=s.escaped,
        )
        for s in sources
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
