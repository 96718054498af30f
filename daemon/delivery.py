"""One batch's way from the spool to sent/ or failed/: zip, token, upload, record, move.

Runs in the upload pool, one batch per group at a time; returns a `BatchResult` that the
scheduler acts on. Every step that must survive a crash is in the manifest before it is
acted on.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
import structlog

from daemon import api, crashpoints
from daemon.archive import BuiltZip, SourceDigest, ZipEntry, build_zip, file_sha256
from daemon.auth import TokenSource
from daemon.config import Environment, Group
from daemon.errors import ArchiveError, SecretError, SpoolError, TokenError
from daemon.intake import FileKind, classify
from daemon.spool import BatchState, FileRecord, Manifest, Spool, iso

log = structlog.get_logger()


class ResultKind(enum.Enum):
    SENT = "sent"
    FAILED = "failed"
    RETRY = "retry"  # the upload may work later: back off and try again
    WAIT = "wait"  # something needs a person (token, disk): the batch waits, never fails


@dataclass(frozen=True, slots=True)
class BatchResult:
    kind: ResultKind
    step: str = ""
    reason: str = ""
    retry_after: float | None = None
    destination: Path | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    """What one group needs to deliver its batches."""

    group: Group
    env: Environment
    spool: Spool
    tokens: TokenSource | SecretError  # the error when the secret cannot be read
    session: requests.Session
    timeouts: tuple[float, float]
    give_up_after_seconds: float
    wall: Callable[[], datetime]


def deliver(ctx: Delivery, batch_id: str) -> BatchResult:
    """Take batch `batch_id` as far as it can go now."""
    structlog.contextvars.bind_contextvars(group=ctx.group.key, batch=batch_id)
    try:
        manifest = ctx.spool.load(batch_id)
        if manifest.state in (BatchState.SENT, BatchState.FAILED):
            return _moved(ctx, manifest)
        if manifest.state is BatchState.CLAIMED or not ctx.spool.zip_path(batch_id).exists():
            _zip(ctx, manifest)
        return _upload(ctx, manifest)
    except (SpoolError, ArchiveError) as exc:
        log.error("batch_stuck", step="spool", reason=str(exc))
        return BatchResult(ResultKind.WAIT, "spool", str(exc))
    finally:
        structlog.contextvars.unbind_contextvars("group", "batch")


def _moved(ctx: Delivery, manifest: Manifest) -> BatchResult:
    dest = ctx.spool.complete_move(manifest, ctx.wall())
    kind = ResultKind.SENT if manifest.state is BatchState.SENT else ResultKind.FAILED
    record = manifest.record or {}
    return BatchResult(kind, record.get("step", ""), record.get("reason", ""), destination=dest)


def _zip(ctx: Delivery, manifest: Manifest) -> None:
    files_dir = ctx.spool.files_dir(manifest.batch)
    names = sorted(p.name for p in files_dir.iterdir())
    markers = [n for n in names if classify(n) is FileKind.MARKER]
    data = [n for n in names if n not in markers]
    if _is_dropped_zip(data):
        built = _ready_made(files_dir / data[0], ctx.spool.zip_path(manifest.batch))
    else:
        entries = [ZipEntry(files_dir / n, n, strip_bom=n.lower().endswith(".csv")) for n in data]
        built = build_zip(entries, ctx.spool.zip_path(manifest.batch))
    manifest.files = _records(built.sources, markers, files_dir)
    manifest.zip = {"bytes": built.bytes, "sha256": built.sha256}
    manifest.state = BatchState.ZIPPED
    ctx.spool.save(manifest)
    crashpoints.reached("zipped")
    log.info(
        "batch_zipped",
        files=len(data),
        bytes=sum(f.bytes for f in manifest.files),
        zip_bytes=built.bytes,
    )


def _is_dropped_zip(names: list[str]) -> bool:
    return len(names) == 1 and classify(names[0]) is FileKind.ZIP


def _ready_made(source: Path, target: Path) -> BuiltZip:
    # A dropped ZIP goes up as it came: link it where the upload expects its ZIP.
    target.unlink(missing_ok=True)
    try:
        target.hardlink_to(source)
    except OSError as exc:
        raise ArchiveError(target, exc.strerror or str(exc)) from exc
    size, digest = source.stat().st_size, file_sha256(source)
    return BuiltZip(target, size, digest, (SourceDigest(source.name, size, digest, False),))


def _records(
    sources: tuple[SourceDigest, ...], markers: list[str], files_dir: Path
) -> list[FileRecord]:
    records = [
        FileRecord(s.name, s.bytes, s.sha256, (classify(s.name) or FileKind.OTHER).value)
        for s in sources
    ]
    for name in markers:
        path = files_dir / name
        records.append(FileRecord(name, path.stat().st_size, file_sha256(path), "marker"))
    return records


def _upload(ctx: Delivery, manifest: Manifest) -> BatchResult:
    if isinstance(ctx.tokens, SecretError):
        return BatchResult(ResultKind.WAIT, "token", str(ctx.tokens))
    resent = manifest.state is BatchState.UPLOADING  # a crash may have come after a 200
    try:
        token = ctx.tokens.get()
        manifest.attempts += 1
        manifest.first_attempt = manifest.first_attempt or iso(ctx.wall())
        manifest.state = BatchState.UPLOADING
        ctx.spool.save(manifest)
        crashpoints.reached("uploading")
        outcome = _post(ctx, manifest, token)
        if outcome.kind is api.OutcomeKind.UNAUTHORIZED:
            ctx.tokens.invalidate(token)
            outcome = _post(ctx, manifest, ctx.tokens.get())
    except TokenError as exc:
        log.error("token_unavailable", environment=exc.environment, reason=exc.reason)
        return BatchResult(ResultKind.WAIT, "token", exc.reason)
    return _settle(ctx, manifest, outcome, resent)


def _post(ctx: Delivery, manifest: Manifest, token: str) -> api.UploadOutcome:
    url = api.upload_url(ctx.env.base_url, ctx.group.group_name)
    custom = any(f.name == "message.properties" for f in manifest.files)
    log.info(
        "upload_started",
        url=url,
        attempt=manifest.attempts,
        zip_bytes=(manifest.zip or {}).get("bytes"),
        custom_notification=custom,
    )
    outcome = api.upload_zip(
        ctx.session,
        url,
        ctx.spool.zip_path(manifest.batch),
        f"{manifest.batch}.zip",
        token,
        custom,
        ctx.timeouts,
    )
    log.info(
        "upload_answered",
        status=outcome.status,
        outcome=outcome.kind.value,
        seconds=outcome.seconds,
    )
    return outcome


def _settle(
    ctx: Delivery, manifest: Manifest, outcome: api.UploadOutcome, resent: bool
) -> BatchResult:
    kind = outcome.kind
    if kind is api.OutcomeKind.UNAUTHORIZED:
        reason = (
            f"a fresh token for environment {ctx.env.name} was refused by the upload "
            "endpoint (HTTP 401); check that the client may upload for group "
            f"{ctx.group.group_name!r}"
        )
        return BatchResult(ResultKind.WAIT, "token", reason)
    if kind is api.OutcomeKind.RETRY and not _gave_up(ctx, manifest):
        return BatchResult(ResultKind.RETRY, "upload", outcome.reason, outcome.retry_after)
    if kind is api.OutcomeKind.RETRY:
        reason = (
            f"{outcome.reason.removesuffix('; dropd tries again')}; dropd gave up after "
            f"{ctx.give_up_after_seconds:g} s and {manifest.attempts} attempts: check the "
            "provider's status, then `dropd retry` the batch"
        )
        return end_batch(ctx, manifest, "upload", reason, outcome)
    if kind is api.OutcomeKind.FAILED:
        return end_batch(ctx, manifest, "upload", outcome.reason, outcome)
    return _sent(ctx, manifest, outcome, resent)


def _gave_up(ctx: Delivery, manifest: Manifest) -> bool:
    if manifest.first_attempt is None:
        return False
    first = datetime.fromisoformat(manifest.first_attempt.replace("Z", "+00:00"))
    return (ctx.wall() - first).total_seconds() >= ctx.give_up_after_seconds


def _sent(
    ctx: Delivery, manifest: Manifest, outcome: api.UploadOutcome, resent: bool
) -> BatchResult:
    crashpoints.reached("answered")
    manifest.state = BatchState.SENT
    record = record_of(ctx, manifest, outcome)
    record["resent_after_restart"] = resent
    dest = ctx.spool.finish(manifest, record, ctx.wall())
    log.info(
        "batch_sent",
        status=outcome.status,
        files=len(manifest.files),
        zip_bytes=(manifest.zip or {}).get("bytes"),
        attempts=manifest.attempts,
        destination=str(dest),
    )
    return BatchResult(ResultKind.SENT, destination=dest)


def end_batch(
    ctx: Delivery,
    manifest: Manifest,
    step: str,
    reason: str,
    outcome: api.UploadOutcome | None = None,
) -> BatchResult:
    """Fail the batch for good: error.json beside its files in failed/."""
    manifest.state = BatchState.FAILED
    record = record_of(ctx, manifest, outcome)
    record.update(step=step, reason=reason)
    dest = ctx.spool.finish(manifest, record, ctx.wall())
    log.error(
        "batch_failed", step=step, reason=reason, status=record.get("status"), destination=str(dest)
    )
    return BatchResult(ResultKind.FAILED, step, reason, destination=dest)


def record_of(
    ctx: Delivery, manifest: Manifest, outcome: api.UploadOutcome | None
) -> dict[str, Any]:
    """The receipt.json / error.json body: everything known about the batch."""
    return {
        "batch": manifest.batch,
        "group": ctx.group.key,
        "group_name": ctx.group.group_name,
        "environment": ctx.env.name,
        "url": api.upload_url(ctx.env.base_url, ctx.group.group_name),
        "files": [
            {"name": f.name, "bytes": f.bytes, "sha256": f.sha256, "kind": f.kind}
            for f in manifest.files
        ],
        "zip": manifest.zip,
        "status": outcome.status if outcome else None,
        "answer": outcome.answer if outcome else None,
        "attempts": manifest.attempts,
        "created": manifest.created,
        "first_attempt": manifest.first_attempt,
        "finished": iso(ctx.wall()),
        "earlier_errors": manifest.history,
    }
