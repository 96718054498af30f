"""One batch's way from the spool to sent/ or failed/: zip, token, upload (outcome.py records
how it ends and moves it).

Runs in the upload pool, one batch per group at a time; returns a `BatchResult` that the
scheduler acts on. Every step that must survive a crash is in the manifest before it is
acted on.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import structlog

from daemon.base import crashpoints
from daemon.base.errors import (
    TRIES_AGAIN,
    ArchiveError,
    FolderError,
    GuardError,
    OversizeError,
    SecretError,
    SourceError,
    SpoolError,
    StillWritten,
    TokenError,
    ValidationError,
)
from daemon.base.steps import Step
from daemon.base.timestamps import iso
from daemon.checks.decoding import Decoding
from daemon.checks.guard import GuardSettings, row_guard
from daemon.delivery.outcome import (
    BatchResult,
    ResultKind,
    end_batch,
    finish_move,
    hold_batch,
    record_sent,
)
from daemon.delivery.packing import pack
from daemon.delivery.setup import Delivery
from daemon.provider import upload as api
from daemon.provider.tokens import TokenSource
from daemon.spool.manifest import BatchState, Manifest, Part, PartAnswer
from daemon.spool.store import Spool

log = structlog.get_logger()


def deliver(ctx: Delivery, batch_id: str) -> BatchResult:
    """Take batch `batch_id` as far as it can go now."""
    structlog.contextvars.bind_contextvars(group=ctx.group.key, batch=batch_id)
    try:
        result = _deliver(ctx, batch_id)
    except Exception as exc:
        # A bug of dropd's must not stop the group's line for good: after a few tries in a
        # row the batch is filed in failed/ with what went wrong, and the line goes on.
        result = _internal(ctx, batch_id, exc)
    else:
        ctx.memory.internal_errors.pop(batch_id, None)
    finally:
        structlog.contextvars.unbind_contextvars("group", "batch")
    return result


def _deliver(ctx: Delivery, batch_id: str) -> BatchResult:
    try:
        why = ctx.spool.lost() or next(iter(ctx.spool.layout_problems(ctx.wall())), None)
        if why is not None:
            return BatchResult(ResultKind.WAIT, Step.FOLDER, why)
        if not ctx.spool.exists(batch_id):
            return _vanished(ctx, batch_id)
        manifest = ctx.spool.load(batch_id)
        answered = ctx.memory.answered.get(batch_id, {})
        manifest.parts = [
            p.answered(answered[p.number]) if p.number in answered else p for p in manifest.parts
        ]
        if manifest.state in (BatchState.SENT, BatchState.FAILED, BatchState.HELD):
            return finish_move(ctx, manifest)
        if manifest.refused is not None:
            return end_batch(ctx, manifest, Step.INTAKE, manifest.refused)
        if manifest.state is BatchState.CLAIMED or not _zips_present(ctx.spool, manifest):
            try:
                _zip(ctx, manifest)
            except ValidationError as exc:
                return end_batch(ctx, manifest, Step.VALIDATE, str(exc), problems=exc.problems)
            except OversizeError as exc:
                return end_batch(ctx, manifest, Step.ZIP, str(exc))
            except SourceError as exc:
                return end_batch(ctx, manifest, Step.INTAKE, exc.reason)
            except StillWritten as exc:
                manifest.state = BatchState.CLAIMED
                ctx.spool.save(manifest)  # with the file's new size and time
                log.warning("file_still_written", file=exc.name, reason=exc.reason)
                return BatchResult(ResultKind.RETRY, Step.ZIP, exc.reason)
            except GuardError as exc:
                return hold_batch(ctx, manifest, exc.offences)
        return _upload(ctx, manifest)
    except FolderError as exc:
        log.error("batch_waits_for_folder", step=Step.FOLDER, reason=exc.reason)
        return BatchResult(ResultKind.WAIT, Step.FOLDER, exc.reason)
    except (SpoolError, ArchiveError) as exc:
        step = Step.ZIP if isinstance(exc, ArchiveError) else Step.SPOOL
        reason = ctx.spool.show(str(exc))
        log.error("batch_stuck", step=step, reason=reason)
        return BatchResult(ResultKind.WAIT, step, reason)


INTERNAL_TRIES = 3  # deliveries of one batch in a row that end in a bug, before it fails


def _internal(ctx: Delivery, batch_id: str, exc: Exception) -> BatchResult:
    tries = ctx.memory.internal_errors.get(batch_id, 0) + 1
    ctx.memory.internal_errors[batch_id] = tries
    what = f"{type(exc).__name__}: {ctx.spool.show(str(exc))}"
    log.exception("delivery_crashed", group=ctx.group.key, batch=batch_id, tries=tries)
    if tries < INTERNAL_TRIES:
        reason = (
            f"dropd met an error of its own on this batch ({what}); it tries again (try "
            f"{tries} of {INTERNAL_TRIES}), then files the batch in failed/ so that the "
            "group's line goes on"
        )
        return BatchResult(ResultKind.WAIT, Step.INTERNAL, reason)
    reason = (
        f"dropd met an error of its own on this batch ({what}) {tries} times in a row, and "
        "filed it here so that the group's line goes on: please report it with the log, "
        "then `dropd retry` the batch"
    )
    try:
        manifest = ctx.spool.load(batch_id)
        return end_batch(ctx, manifest, Step.INTERNAL, reason)
    except Exception:
        log.exception("batch_not_filed", group=ctx.group.key, batch=batch_id)
        return BatchResult(ResultKind.WAIT, Step.INTERNAL, reason)


def _vanished(ctx: Delivery, batch_id: str) -> BatchResult:
    ctx.memory.forget(batch_id)
    reason = (
        f"batch {batch_id} is no longer in {ctx.spool.work_shown}: its folder was removed "
        "(with the files in it) by someone else; dropd deletes nothing, and goes on with "
        "the next batch"
    )
    log.error("batch_vanished", reason=reason)
    return BatchResult(ResultKind.GONE, Step.SPOOL, reason)


def _zips_present(spool: Spool, manifest: Manifest) -> bool:
    folder = spool.batch_dir(manifest.batch)
    return bool(manifest.parts) and all((folder / p.zip).is_file() for p in manifest.parts)


def _zip(ctx: Delivery, manifest: Manifest) -> None:
    # The guard looks once, before the first ZIP (a batch zipped before a crash passed it),
    # and never at a batch a person released.
    first = manifest.state is BatchState.CLAIMED and manifest.released is None
    guard = row_guard(GuardSettings.of(ctx.group)) if first else None
    group = ctx.group
    pack(
        ctx.spool,
        manifest,
        group.max_upload_bytes,
        group.validation,
        guard,
        Decoding.of(group),
    )
    for warning in manifest.warnings:
        log.warning("row_warning", **warning.to_json())
    manifest.state = BatchState.ZIPPED
    ctx.spool.save(manifest)
    crashpoints.reached("zipped")
    log.info(
        "batch_zipped",
        files=sum(1 for f in manifest.files if f.kind != "marker"),
        bytes=sum(f.bytes for f in manifest.files),
        zip_bytes=None if manifest.zip is None else manifest.zip.bytes,
        parts=len(manifest.parts),
    )


def _upload(ctx: Delivery, manifest: Manifest) -> BatchResult:
    if isinstance(ctx.tokens, SecretError):
        return BatchResult(ResultKind.WAIT, Step.TOKEN, str(ctx.tokens))
    # Found `uploading` by a process that never posted it: a crash may have come after a 200.
    resent = manifest.state is BatchState.UPLOADING and manifest.batch not in ctx.memory.posted
    outcome: api.UploadOutcome | None = None
    posted: float | None = None  # seconds spent in POSTs, for the metrics
    for index, part in enumerate(manifest.parts):
        if part.sent:
            continue
        try:
            outcome = _send_part(ctx, manifest, part, ctx.tokens)
        except TokenError as exc:
            reason = _token_reason(exc)
            log.error("token_unavailable", environment=exc.environment, reason=reason)
            return BatchResult(ResultKind.WAIT, Step.TOKEN, reason, upload_seconds=posted)
        posted = (posted or 0.0) + outcome.seconds
        if outcome.kind is not api.OutcomeKind.SENT:
            return replace(_settle(ctx, manifest, outcome), upload_seconds=posted)
        crashpoints.reached("answered")
        answer = PartAnswer(outcome.status, outcome.answer, resent)
        ctx.memory.answered.setdefault(manifest.batch, {})[part.number] = answer
        manifest.parts[index] = part.answered(answer)
        resent = False  # only the part in flight at the crash can have gone up twice
        ctx.spool.save(manifest)
    return replace(record_sent(ctx, manifest), upload_seconds=posted)


def _send_part(
    ctx: Delivery, manifest: Manifest, part: Part, tokens: TokenSource
) -> api.UploadOutcome:
    """POST one part, renewing the token once on a 401. Raises TokenError if none works."""
    token = tokens.get()
    manifest.attempts += 1
    manifest.first_attempt = manifest.first_attempt or iso(ctx.wall())
    manifest.state = BatchState.UPLOADING
    ctx.spool.save(manifest)
    crashpoints.reached("uploading")
    ctx.memory.posted.add(manifest.batch)
    outcome = _post(ctx, manifest, part, token)
    if outcome.kind is api.OutcomeKind.UNAUTHORIZED:
        tokens.invalidate(token)
        refused = outcome.seconds
        outcome = _post(ctx, manifest, part, tokens.get())
        outcome = replace(outcome, seconds=refused + outcome.seconds)
    return outcome


def _post(ctx: Delivery, manifest: Manifest, part: Part, token: str) -> api.UploadOutcome:
    url = api.upload_url(ctx.env.base_url, ctx.group.group_name)
    log.info(
        "upload_started",
        url=url,
        attempt=manifest.attempts,
        part=part.number,
        parts=len(manifest.parts),
        zip_bytes=part.bytes,
        custom_notification=part.custom_notification,
    )
    suffix = f"-{part.number}" if len(manifest.parts) > 1 else ""
    outcome = api.upload_zip(
        ctx.session,
        url,
        ctx.spool.batch_dir(manifest.batch) / part.zip,
        f"{manifest.batch}{suffix}.zip",
        token,
        part.custom_notification,
        ctx.timeouts,
    )
    log.info(
        "upload_answered",
        status=outcome.status,
        outcome=outcome.kind.value,
        seconds=outcome.seconds,
        part=part.number,
    )
    return outcome


def _settle(ctx: Delivery, manifest: Manifest, outcome: api.UploadOutcome) -> BatchResult:
    kind = outcome.kind
    if kind is api.OutcomeKind.UNAUTHORIZED:
        reason = (
            f"a fresh token for environment {ctx.env.name} was refused by the upload "
            "endpoint (HTTP 401); check that the client may upload for group "
            f"{ctx.group.group_name!r}"
        )
        return BatchResult(ResultKind.WAIT, Step.TOKEN, reason)
    if outcome.retryable and not _gave_up(ctx, manifest):
        reason = f"{outcome.reason}{TRIES_AGAIN}"
        return BatchResult(ResultKind.RETRY, Step.UPLOAD, reason, outcome.retry_after)
    if outcome.retryable:
        reason = (
            f"{outcome.reason}; dropd gave up after "
            f"{ctx.give_up_after_seconds:g} s and {manifest.attempts} attempts: check the "
            "provider's status, then `dropd retry` the batch"
        )
        return end_batch(ctx, manifest, Step.UPLOAD, reason, outcome)
    return end_batch(ctx, manifest, Step.UPLOAD, outcome.reason, outcome)


def _token_reason(exc: TokenError) -> str:
    return f"{exc.reason}{TRIES_AGAIN}" if exc.retryable else exc.reason


def _gave_up(ctx: Delivery, manifest: Manifest) -> bool:
    if manifest.first_attempt is None:
        return False
    first = datetime.fromisoformat(manifest.first_attempt.replace("Z", "+00:00"))
    return (ctx.wall() - first).total_seconds() >= ctx.give_up_after_seconds
