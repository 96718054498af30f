"""One batch's way from the spool to sent/ or failed/: zip, token, upload (`batch_end` records
how it ends and moves it).

Runs in the upload pool, one batch per group at a time; returns a `BatchResult` that the
scheduler acts on. Every step that must survive a crash is in the manifest before it is
acted on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import requests
import structlog

from daemon import api, crashpoints
from daemon.auth import TokenSource
from daemon.batch_end import (
    BatchResult,
    ResultKind,
    end_batch,
    finish_move,
    hold_batch,
    record_sent,
)
from daemon.config import Environment, Group
from daemon.errors import (
    ArchiveError,
    GuardError,
    OversizeError,
    SecretError,
    SpoolError,
    TokenError,
    ValidationError,
)
from daemon.guard import GuardSettings, row_guard
from daemon.manifest import BatchState, Manifest
from daemon.packing import pack
from daemon.spool import Spool
from daemon.timestamps import iso

log = structlog.get_logger()


@dataclass(slots=True)
class DeliveryMemory:
    """What this process knows of its batches beyond the disk (kept across reloads)."""

    # Parts the server accepted but the disk has not recorded yet (it was full): the next
    # attempt records them instead of uploading them again.
    answered: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    # Batches this process has posted: an `uploading` state it finds for one of these is
    # its own retry, not a restart after a crash.
    posted: set[str] = field(default_factory=set)

    def forget(self, batch_id: str) -> None:
        """The batch is recorded on disk: nothing more to remember of it."""
        self.answered.pop(batch_id, None)
        self.posted.discard(batch_id)


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
    memory: DeliveryMemory = field(default_factory=lambda: DeliveryMemory())


def deliver(ctx: Delivery, batch_id: str) -> BatchResult:
    """Take batch `batch_id` as far as it can go now."""
    structlog.contextvars.bind_contextvars(group=ctx.group.key, batch=batch_id)
    try:
        manifest = ctx.spool.load(batch_id)
        for part in manifest.parts:
            part.update(ctx.memory.answered.get(batch_id, {}).get(part["number"], {}))
        if manifest.state in (BatchState.SENT, BatchState.FAILED, BatchState.HELD):
            return finish_move(ctx, manifest)
        if manifest.state is BatchState.CLAIMED or not _zips_present(ctx.spool, manifest):
            try:
                _zip(ctx, manifest)
            except ValidationError as exc:
                return end_batch(ctx, manifest, "validate", str(exc), problems=exc.problems)
            except OversizeError as exc:
                return end_batch(ctx, manifest, "zip", str(exc))
            except GuardError as exc:
                return hold_batch(ctx, manifest, exc.offences)
        return _upload(ctx, manifest)
    except (SpoolError, ArchiveError) as exc:
        step = "zip" if isinstance(exc, ArchiveError) else "spool"
        log.error("batch_stuck", step=step, reason=str(exc))
        return BatchResult(ResultKind.WAIT, step, str(exc))
    finally:
        structlog.contextvars.unbind_contextvars("group", "batch")


def _zips_present(spool: Spool, manifest: Manifest) -> bool:
    folder = spool.batch_dir(manifest.batch)
    return bool(manifest.parts) and all((folder / p["zip"]).is_file() for p in manifest.parts)


def _zip(ctx: Delivery, manifest: Manifest) -> None:
    # The guard looks once, before the first ZIP (a batch zipped before a crash passed it),
    # and never at a batch a person released.
    first = manifest.state is BatchState.CLAIMED and manifest.released is None
    guard = row_guard(GuardSettings.of(ctx.group)) if first else None
    pack(ctx.spool, manifest, ctx.group.max_upload_bytes, ctx.group.validation, guard)
    for warning in manifest.warnings:
        log.warning("row_warning", **warning)
    manifest.state = BatchState.ZIPPED
    ctx.spool.save(manifest)
    crashpoints.reached("zipped")
    log.info(
        "batch_zipped",
        files=sum(1 for f in manifest.files if f.kind != "marker"),
        bytes=sum(f.bytes for f in manifest.files),
        zip_bytes=(manifest.zip or {}).get("bytes"),
        parts=len(manifest.parts),
    )


def _upload(ctx: Delivery, manifest: Manifest) -> BatchResult:
    if isinstance(ctx.tokens, SecretError):
        return BatchResult(ResultKind.WAIT, "token", str(ctx.tokens))
    # Found `uploading` by a process that never posted it: a crash may have come after a 200.
    resent = manifest.state is BatchState.UPLOADING and manifest.batch not in ctx.memory.posted
    outcome: api.UploadOutcome | None = None
    posted: float | None = None  # seconds spent in POSTs, for the metrics
    for part in manifest.parts:
        if part.get("sent"):
            continue
        try:
            outcome = _send_part(ctx, manifest, part, ctx.tokens)
        except TokenError as exc:
            log.error("token_unavailable", environment=exc.environment, reason=exc.reason)
            return BatchResult(ResultKind.WAIT, "token", exc.reason, upload_seconds=posted)
        posted = (posted or 0.0) + outcome.seconds
        if outcome.kind is not api.OutcomeKind.SENT:
            return replace(_settle(ctx, manifest, outcome), upload_seconds=posted)
        crashpoints.reached("answered")
        answer = {
            "sent": True,
            "status": outcome.status,
            "answer": outcome.answer,
            "resent_after_restart": resent,
        }
        ctx.memory.answered.setdefault(manifest.batch, {})[part["number"]] = answer
        part.update(answer)
        resent = False  # only the part in flight at the crash can have gone up twice
        ctx.spool.save(manifest)
    return replace(record_sent(ctx, manifest), upload_seconds=posted)


def _send_part(
    ctx: Delivery, manifest: Manifest, part: dict[str, Any], tokens: TokenSource
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


def _post(ctx: Delivery, manifest: Manifest, part: dict[str, Any], token: str) -> api.UploadOutcome:
    url = api.upload_url(ctx.env.base_url, ctx.group.group_name)
    log.info(
        "upload_started",
        url=url,
        attempt=manifest.attempts,
        part=part["number"],
        parts=len(manifest.parts),
        zip_bytes=part["bytes"],
        custom_notification=part["custom_notification"],
    )
    suffix = f"-{part['number']}" if len(manifest.parts) > 1 else ""
    outcome = api.upload_zip(
        ctx.session,
        url,
        ctx.spool.batch_dir(manifest.batch) / part["zip"],
        f"{manifest.batch}{suffix}.zip",
        token,
        part["custom_notification"],
        ctx.timeouts,
    )
    log.info(
        "upload_answered",
        status=outcome.status,
        outcome=outcome.kind.value,
        seconds=outcome.seconds,
        part=part["number"],
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
    return end_batch(ctx, manifest, "upload", outcome.reason, outcome)


def _gave_up(ctx: Delivery, manifest: Manifest) -> bool:
    if manifest.first_attempt is None:
        return False
    first = datetime.fromisoformat(manifest.first_attempt.replace("Z", "+00:00"))
    return (ctx.wall() - first).total_seconds() >= ctx.give_up_after_seconds
