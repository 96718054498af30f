"""Packing a claimed batch into the ZIP (or ZIPs, cut to `max_upload_bytes`) it goes up as."""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from daemon.archive import BuiltZip, SourceDigest, ZipEntry, build_zip, file_sha256
from daemon.config import Validation
from daemon.errors import ArchiveError, OversizeError, ValidationError
from daemon.intake import FileKind, classify
from daemon.parts import PROPERTIES, Sized, TooBig, plan_parts, server_order
from daemon.spool import FileRecord, Manifest, Spool
from daemon.validate import validate_batch
from daemon.zipcheck import zip_problems


def pack(spool: Spool, manifest: Manifest, limit: int, validation: Validation) -> None:
    """Check the batch's files as the server would, then build its ZIP part(s); record
    files, parts and warnings in `manifest` (not saved).

    Raises ValidationError if the server would refuse the files, OversizeError if one file
    cannot fit in `limit` bytes, ArchiveError if the ZIP cannot be written.
    """
    files_dir = spool.files_dir(manifest.batch)
    names = sorted(p.name for p in files_dir.iterdir())
    markers = [n for n in names if classify(n) is FileKind.MARKER]
    data = [n for n in names if n not in markers]
    sent = {tuple(p["files"]) for p in manifest.parts if p.get("sent")}
    if len(data) == 1 and classify(data[0]) is FileKind.ZIP:
        problems = zip_problems(files_dir / data[0])
        if problems:
            raise ValidationError([{"file": data[0], "line": None, "message": p} for p in problems])
        built = _ready_made(files_dir / data[0], spool.zip_path(manifest.batch))
        parts = [_part(1, built, [data[0]], _zip_has_notification(built.path))]
        sources = built.sources
    else:
        report = validate_batch([files_dir / n for n in data], validation)
        if report.problems:
            raise ValidationError([f.to_json() for f in report.problems])
        manifest.warnings = [f.to_json() for f in report.warnings]
        parts, sources = _build(spool, manifest.batch, data, limit, report.kinds)
    for part in parts:
        part["sent"] = tuple(part["files"]) in sent
    manifest.files = _records(sources, markers, files_dir)
    manifest.parts = parts
    manifest.zip = {
        "bytes": sum(p["bytes"] for p in parts),
        "sha256": parts[0]["sha256"] if len(parts) == 1 else None,
        "parts": len(parts),
    }


def _build(
    spool: Spool, batch: str, data: list[str], limit: int, kinds: Mapping[str, str]
) -> tuple[list[dict[str, Any]], tuple[SourceDigest, ...]]:
    files_dir = spool.files_dir(batch)
    ordered = server_order(data, kinds)
    whole = build_zip(_entries(files_dir, ordered), spool.zip_path(batch))
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
    # The server reads a byte-order mark as part of the first header name: strip it.
    return [ZipEntry(files_dir / n, n, strip_bom=n.lower().endswith(".csv")) for n in names]


def _part(number: int, built: BuiltZip, names: list[str], custom: bool) -> dict[str, Any]:
    return {
        "number": number,
        "zip": built.path.name,
        "files": names,
        "bytes": built.bytes,
        "sha256": built.sha256,
        "custom_notification": custom,
        "bom_removed": [s.name for s in built.sources if s.bom_stripped],
    }


def _ready_made(source: Path, target: Path) -> BuiltZip:
    # A dropped ZIP goes up as it came: link it where the upload expects its ZIP.
    target.unlink(missing_ok=True)
    try:
        target.hardlink_to(source)
    except OSError as exc:
        raise ArchiveError(target, exc.strerror or str(exc)) from exc
    size, digest = source.stat().st_size, file_sha256(source)
    return BuiltZip(target, size, digest, (SourceDigest(source.name, size, digest, False),))


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
    zipped = [FileRecord(s.name, s.bytes, s.sha256, _kind(s.name)) for s in sources]
    return zipped + describe_files([files_dir / name for name in markers])


def describe_files(paths: Iterable[Path]) -> list[FileRecord]:
    """Name, size, SHA-256 and kind of each file, read from disk."""
    return [FileRecord(p.name, p.stat().st_size, file_sha256(p), _kind(p.name)) for p in paths]


def _kind(name: str) -> str:
    return (classify(name) or FileKind.OTHER).value
