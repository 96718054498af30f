"""How a batch's delivery ends: the `BatchResult` the scheduler acts on and, for a batch that
is done, the record it leaves (receipt.json, error.json or held.json, see records.py) and its
move to sent/, failed/ or held/.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from daemon.base.errors import Finding, Offence
from daemon.base.records import for_people
from daemon.base.steps import Step
from daemon.base.timestamps import iso
from daemon.config.load import config_option
from daemon.delivery.packing import describe_files
from daemon.delivery.records import BatchRecord, Failure, HeldRecord
from daemon.delivery.setup import Delivery
from daemon.provider import upload as api
from daemon.spool.manifest import BatchState, FileRecord, Manifest

log = structlog.get_logger()


class ResultKind(enum.Enum):
    SENT = "sent"
    FAILED = "failed"
    RETRY = "retry"  # the upload may work later: back off and try again
    WAIT = "wait"  # something needs a person (token, disk): the batch waits, never fails
    HELD = "held"  # the guard held it: in held/ until a person releases it
    GONE = "gone"  # its folder vanished from the spool (removed by someone else): it leaves


@dataclass(frozen=True, slots=True)
class BatchResult:
    kind: ResultKind
    step: Step | None = None  # where it stopped; None for a sent batch
    reason: str = ""
    retry_after: float | None = None
    destination: Path | None = None
    # The figures of a sent batch, for the metrics.
    files: int = 0  # files uploaded (markers are not)
    file_bytes: int = 0  # their size as dropped
    zip_bytes: int = 0  # the ZIP, all its parts, as the server took it
    upload_seconds: float | None = None  # spent in POSTs by this attempt; None: no POST


def finish_move(ctx: Delivery, manifest: Manifest) -> BatchResult:
    """A batch that ended before a crash: finish its move out, and tell how it ended."""
    dest = ctx.spool.complete_move(manifest, ctx.wall())
    if manifest.state is BatchState.SENT:
        return _sent_result(manifest, dest)
    record = manifest.record or {}  # as written: its step is one dropd wrote
    step = Step(record["step"]) if record.get("step") else None
    kind = ResultKind.HELD if manifest.state is BatchState.HELD else ResultKind.FAILED
    return BatchResult(kind, step, record.get("reason", ""), destination=dest)


def record_sent(ctx: Delivery, manifest: Manifest) -> BatchResult:
    """The batch is sent: receipt.json beside its files in sent/."""
    manifest.state = BatchState.SENT
    record = record_of(ctx, manifest, None)
    dest = ctx.spool.finish(manifest, for_people(record.to_json()), ctx.wall())
    ctx.memory.forget(manifest.batch)
    log.info(
        "batch_sent",
        status=record.status,
        files=len(manifest.files),
        zip_bytes=None if manifest.zip is None else manifest.zip.bytes,
        parts=len(manifest.parts),
        attempts=manifest.attempts,
        destination=str(dest),
    )
    return _sent_result(manifest, dest)


def _sent_result(manifest: Manifest, dest: Path) -> BatchResult:
    uploaded = [f for f in manifest.files if f.kind != "marker"]
    return BatchResult(
        ResultKind.SENT,
        destination=dest,
        files=len(uploaded),
        file_bytes=sum(f.bytes for f in uploaded),
        zip_bytes=0 if manifest.zip is None else manifest.zip.bytes,
    )


def end_batch(
    ctx: Delivery,
    manifest: Manifest,
    step: Step,
    reason: str,
    outcome: api.UploadOutcome | None = None,
    problems: Sequence[Finding] | None = None,
) -> BatchResult:
    """Fail the batch for good: error.json beside its files in failed/."""
    manifest.state = BatchState.FAILED
    if not manifest.files or any(not f.sha256 for f in manifest.files):
        _describe_present(ctx, manifest)
    failure = Failure(
        step,
        reason,
        None if problems is None else tuple(problems),
        _as_checked(ctx, manifest) if step is Step.VALIDATE else None,
    )
    record = record_of(ctx, manifest, outcome, failure)
    dest = ctx.spool.finish(manifest, for_people(record.to_json()), ctx.wall())
    ctx.memory.forget(manifest.batch)
    log.error("batch_failed", step=step, reason=reason, status=record.status, destination=str(dest))
    return BatchResult(ResultKind.FAILED, step, reason, destination=dest)


def hold_batch(ctx: Delivery, manifest: Manifest, offences: Sequence[Offence]) -> BatchResult:
    """Hold the batch: held.json beside its files in held/, nothing sent."""
    manifest.state = BatchState.HELD
    _describe_present(ctx, manifest)
    about = record_of(ctx, manifest, None)
    record = HeldRecord(
        about,
        tuple(offences),
        ctx.group.min_rows_for_guard,
        iso(ctx.wall()),
        config_option(ctx.config_path),
    )
    dest = ctx.spool.finish(manifest, for_people(record.to_json()), ctx.wall())
    ctx.memory.forget(manifest.batch)
    log.warning(
        "batch_held",
        reason=record.reason,
        guard=[o.to_json() for o in offences],
        destination=str(dest),
    )
    return BatchResult(ResultKind.HELD, Step.GUARD, record.reason, destination=dest)


def _as_checked(ctx: Delivery, manifest: Manifest) -> tuple[FileRecord, ...]:
    """Every file in the batch's folder as validation read it, for `dropd retry` to compare:
    what goes to failed/BATCH/, whatever the manifest listed."""
    files_dir = ctx.spool.files_dir(manifest.batch)
    names = ctx.spool.file_names(manifest.batch)
    listed = {f.name: f for f in manifest.files}
    if sorted(listed) == names and all(f.sha256 for f in listed.values()):
        return tuple(listed[n] for n in names)
    return tuple(describe_files([files_dir / n for n in names]))


def _describe_present(ctx: Delivery, manifest: Manifest) -> None:
    # The files in the batch as they are (intake listed them before their claim, and may
    # list one that never arrived), with the kinds intake gave them.
    kinds = {f.name: f.kind for f in manifest.files}
    files_dir = ctx.spool.files_dir(manifest.batch)
    names = ctx.spool.file_names(manifest.batch)
    manifest.files = describe_files([files_dir / n for n in names], kinds)


def record_of(
    ctx: Delivery,
    manifest: Manifest,
    outcome: api.UploadOutcome | None,
    failure: Failure | None = None,
) -> BatchRecord:
    """The receipt.json / error.json: everything known about the batch."""
    last = manifest.parts[-1] if manifest.parts else None
    return BatchRecord(
        batch=manifest.batch,
        group=ctx.group.key,
        group_name=ctx.group.group_name,
        environment=ctx.env.name,
        url=api.upload_url(ctx.env.base_url, ctx.group.group_name),
        files=tuple(manifest.files),
        zip=manifest.zip,
        # The answer that decided the batch: the failing one, else the last part's 200.
        status=outcome.status if outcome else (last.status if last else None),
        answer=outcome.answer if outcome else (last.answer if last else None),
        parts=tuple(manifest.parts),
        attempts=manifest.attempts,
        created=manifest.created,
        first_attempt=manifest.first_attempt,
        finished=iso(ctx.wall()),
        earlier_errors=tuple(manifest.history),
        warnings=manifest.warnings,
        released=manifest.released,
        failure=failure,
        unpacked=manifest.unpacked,
    )
