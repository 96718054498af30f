"""How a batch's delivery ends: the `BatchResult` the scheduler acts on and, for a batch that
is done, the record it leaves (receipt.json, error.json or held.json) and its move to sent/,
failed/ or held/.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from daemon.base.names import name_fields, shown
from daemon.base.records import for_people
from daemon.base.timestamps import iso
from daemon.checks.guard import held_record
from daemon.delivery.packing import describe_files
from daemon.provider import upload as api
from daemon.spool.manifest import BatchState, Manifest

if TYPE_CHECKING:
    from daemon.delivery.deliver import Delivery

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
    step: str = ""
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
    record = manifest.record or {}
    step, reason = record.get("step", ""), record.get("reason", "")
    kind = ResultKind.HELD if manifest.state is BatchState.HELD else ResultKind.FAILED
    return BatchResult(kind, step, reason, destination=dest)


def record_sent(ctx: Delivery, manifest: Manifest) -> BatchResult:
    """The batch is sent: receipt.json beside its files in sent/."""
    manifest.state = BatchState.SENT
    record = record_of(ctx, manifest, None)
    dest = ctx.spool.finish(manifest, for_people(record), ctx.wall())
    ctx.memory.forget(manifest.batch)
    log.info(
        "batch_sent",
        status=record["status"],
        files=len(manifest.files),
        zip_bytes=(manifest.zip or {}).get("bytes"),
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
        zip_bytes=int((manifest.zip or {}).get("bytes") or 0),
    )


def end_batch(
    ctx: Delivery,
    manifest: Manifest,
    step: str,
    reason: str,
    outcome: api.UploadOutcome | None = None,
    problems: list[dict[str, Any]] | None = None,
) -> BatchResult:
    """Fail the batch for good: error.json beside its files in failed/."""
    manifest.state = BatchState.FAILED
    if not manifest.files or any(not f.sha256 for f in manifest.files):
        _describe_present(ctx, manifest)
    record = record_of(ctx, manifest, outcome)
    record.update(step=step, reason=reason)
    if problems is not None:
        record["problems"] = problems
    dest = ctx.spool.finish(manifest, for_people(record), ctx.wall())
    ctx.memory.forget(manifest.batch)
    log.error(
        "batch_failed", step=step, reason=reason, status=record.get("status"), destination=str(dest)
    )
    return BatchResult(ResultKind.FAILED, step, reason, destination=dest)


def hold_batch(ctx: Delivery, manifest: Manifest, offences: list[dict[str, Any]]) -> BatchResult:
    """Hold the batch (rule 11): held.json beside its files in held/, nothing sent."""
    manifest.state = BatchState.HELD
    _describe_present(ctx, manifest)
    base = record_of(ctx, manifest, None)
    record = held_record(base, offences, ctx.group.min_rows_for_guard, iso(ctx.wall()))
    dest = ctx.spool.finish(manifest, for_people(record), ctx.wall())
    ctx.memory.forget(manifest.batch)
    log.warning("batch_held", reason=record["reason"], guard=offences, destination=str(dest))
    return BatchResult(ResultKind.HELD, "guard", record["reason"], destination=dest)


def _describe_present(ctx: Delivery, manifest: Manifest) -> None:
    # The files in the batch as they are (intake listed them before their claim, and may
    # list one that never arrived), with the kinds intake gave them.
    kinds = {f.name: f.kind for f in manifest.files}
    files_dir = ctx.spool.files_dir(manifest.batch)
    names = ctx.spool.file_names(manifest.batch)
    manifest.files = describe_files([files_dir / n for n in names], kinds)


def record_of(
    ctx: Delivery, manifest: Manifest, outcome: api.UploadOutcome | None
) -> dict[str, Any]:
    """The receipt.json / error.json body: everything known about the batch."""
    last = manifest.parts[-1] if manifest.parts else {}
    return {
        "batch": manifest.batch,
        "group": ctx.group.key,
        "group_name": ctx.group.group_name,
        "environment": ctx.env.name,
        "url": api.upload_url(ctx.env.base_url, ctx.group.group_name),
        "files": [
            {**name_fields(f.name), "bytes": f.bytes, "sha256": f.sha256 or None, "kind": f.kind}
            for f in manifest.files
        ],
        "zip": manifest.zip,
        # The answer that decided the batch: the failing one, else the last part's 200.
        "status": outcome.status if outcome else last.get("status"),
        "answer": outcome.answer if outcome else last.get("answer"),
        "parts": [_part_record(p) for p in manifest.parts],
        "resent_after_restart": any(p.get("resent_after_restart") for p in manifest.parts),
        "bom_removed": [n for p in manifest.parts for n in p.get("bom_removed", [])],
        "attempts": manifest.attempts,
        "created": manifest.created,
        "first_attempt": manifest.first_attempt,
        "finished": iso(ctx.wall()),
        "earlier_errors": manifest.history,
        "warnings": manifest.warnings,
        "released": manifest.released is not None,
        "released_by": (manifest.released or {}).get("by"),
        "released_at": (manifest.released or {}).get("at"),
    }


def _part_record(part: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "number",
        "files",
        "bytes",
        "sha256",
        "custom_notification",
        "sent",
        "status",
        "answer",
        "resent_after_restart",
    )
    kept = {k: part.get(k) for k in keys}
    kept["files"] = [shown(name) for name in part.get("files", [])]
    if part.get("entries"):  # names that are not UTF-8, as the ZIP holds them
        kept["entries"] = {shown(name): entry for name, entry in part["entries"].items()}
    return kept
