"""`dropd show`: one batch, wherever it is, made readable from its record: the files, the
step and the reason, the server's answer with its `fileErrors`, and the command to run next.
`--json` prints the record as stored (a waiting batch's manifest), redacted as every record.

Exit codes: 0 when the batch was found; 1 when the group has no such batch (or its folder
cannot be read); 2 on a bad config or an unknown group.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from daemon.base.errors import ConfigError, DropdError
from daemon.base.steps import Step
from daemon.config.load import config_option, load_config
from daemon.config.lookup import group_named
from daemon.observe.batches import Batch, Place, find_batch, is_batch_id


def run(args: argparse.Namespace) -> int:
    """`dropd show`, as the command line asked for it."""
    try:
        config = load_config(args.config)
        group = group_named(config, args.group)
    except ConfigError as exc:
        print("\n".join(exc.problems), file=sys.stderr)
        return 2
    try:
        batch = find_batch(group.folder, group.key, args.batch)
    except DropdError as exc:
        print(f"dropd show: group {group.key}: {exc}", file=sys.stderr)
        return 1
    if batch is None:
        print(f"dropd show: {_not_found(args.batch, group.key, config.path)}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(batch.record, indent=2, ensure_ascii=False))
    else:
        print("\n".join(render(batch, config_option(config.path))))
    return 0


def _not_found(batch_id: str, group: str, config: Path) -> str:
    if not is_batch_id(batch_id):
        return (
            f"{batch_id!r} is not a batch id (they look like 20261123T085810.123456Z-3f9a); "
            f"`dropd list{config_option(config)} {group}` lists them"
        )
    return (
        f"group {group} has no batch {batch_id} (waiting, sent, failed or held); "
        f"`dropd list{config_option(config)} {group}` lists them"
    )


def render(batch: Batch, option: str) -> list[str]:
    """The batch for a person; `option` is the ` --config F` of the commands it suggests."""
    record = batch.record or {}
    lines = [f"batch {batch.batch} of group {batch.group}: {_state(batch)}"]
    lines += _field("folder", str(batch.folder))
    lines += _field("reason", batch.reason if batch.place is not Place.SENT else "")
    lines += _field("record", batch.record_file or "none readable")
    lines += _times(record)
    lines += _files(batch, _guard_rows(record))
    lines += _guard(record)
    lines += _findings("problems", record.get("problems"))
    lines += _findings("warnings", record.get("warnings"))
    lines += _answer(record)
    lines += _earlier(record.get("earlier_errors"))
    lines += _field("next", next_step(batch, option))
    return lines


def _state(batch: Batch) -> str:
    if batch.place is Place.FAILED:
        return f"failed at step {batch.step or 'unknown'}"
    if batch.place is Place.HELD:
        return "held by the guard"
    if batch.place is Place.SENT:
        return "sent" if batch.status is None else f"sent (HTTP {batch.status})"
    return f"waiting: {batch.reason}"


def next_step(batch: Batch, option: str) -> str:
    """What a person can do about the batch, as a command to run where there is one."""
    ids = f"{batch.group} {batch.batch}"
    if batch.place is Place.WAITING:
        return f"nothing: the running dropd sends it; `dropd status{option}` shows how it goes"
    if batch.place is Place.SENT:
        return "nothing: the server took it; its summary e-mail tells of rows it skipped"
    if batch.place is Place.HELD:
        return (
            f"if the deletions are meant, send it as it is: dropd release{option} {ids}; "
            f"if not, fix the export and remove {batch.folder}"
        )
    if batch.step == Step.INTAKE:
        return (
            "rename or fix the file and drop it again (dropd would refuse this batch again); "
            f"then remove {batch.folder}"
        )
    if batch.step == Step.VALIDATE:
        return (
            f"fix the files in {batch.folder}/ (not the ones in the drop folder), then: "
            f"dropd retry{option} {ids}"
        )
    return f"once the cause is fixed: dropd retry{option} {ids}"


def _field(label: str, value: str) -> list[str]:
    return [f"{label + ':':<11}{value}"] if value else []


def _times(record: dict[str, Any]) -> list[str]:
    keys = ("created", "queued", "first_attempt", "finished", "held", "released_at")
    parts = [f"{key} {record[key]}" for key in keys if isinstance(record.get(key), str)]
    attempts = record.get("attempts")
    if isinstance(attempts, int) and not isinstance(attempts, bool):
        parts.append(f"attempts {attempts}")
    if isinstance(record.get("released_by"), str):
        parts.append(f"released by {record['released_by']}")
    return _field("when", ", ".join(parts))


def _guard_rows(record: dict[str, Any]) -> dict[str, str]:
    rows: dict[str, str] = {}
    for offence in _dicts(record.get("guard")):
        if isinstance(offence.get("rows"), int) and isinstance(offence.get("deleted"), int):
            rows[str(offence.get("file"))] = (
                f"{offence['rows']:,} rows, {offence['deleted']:,} deleted"
            )
    return rows


def _files(batch: Batch, rows: dict[str, str]) -> list[str]:
    count = len(batch.files) + batch.more_files
    lines = [f"files ({count}):"]
    width = max((len(f.name) for f in batch.files), default=0)
    for file in batch.files:
        size = "" if file.bytes is None else f"{file.bytes:,} bytes"
        about = ", ".join(x for x in (size, file.kind or "", rows.get(file.name, "")) if x)
        lines.append(f"  {file.name:<{width}}  {about}".rstrip())
    if batch.more_files:
        lines.append(f"  … and {batch.more_files:,} more, not listed in the record")
    return lines


def _guard(record: dict[str, Any]) -> list[str]:
    offences = _dicts(record.get("guard"))
    if not offences:
        return []
    lines = ["guard:"]
    for offence in offences:
        lines.append(
            f"  {offence.get('file')}: {offence.get('deleted')} of {offence.get('rows')} rows "
            f"deleted ({offence.get('share')} %), over max_deleted_percent "
            f"({offence.get('limit')} %)"
        )
    return lines


def _findings(label: str, findings: object) -> list[str]:
    listed = _dicts(findings)
    if not listed:
        return []
    lines = [f"{label} ({len(listed)}):"]
    for finding in listed:
        line = f" line {finding['line']}" if finding.get("line") else ""
        lines.append(f"  {finding.get('file')}{line}: {finding.get('message')}")
    return lines


def _answer(record: dict[str, Any]) -> list[str]:
    """The server's answer: its status, message and fileErrors, whatever their shape."""
    status, answer = record.get("status"), record.get("answer")
    if status is None and answer is None:
        return []
    url = f" from {record['url']}" if isinstance(record.get("url"), str) else ""
    lines = [f"server:    HTTP {status if status is not None else '(none)'}{url}"]
    if not isinstance(answer, dict):
        return lines + ([f"  answer: {_compact(answer)}"] if answer is not None else [])
    if answer.get("message") is not None:
        lines.append(f"  message: {answer['message']}")
    errors = answer.get("fileErrors")
    if isinstance(errors, list) and errors:
        lines.append("  fileErrors:")
        for error in errors:
            if isinstance(error, dict) and set(error) <= {"title", "description"}:
                lines.append(f"    {error.get('title')}: {error.get('description')}")
            else:
                lines.append(f"    {_compact(error)}")
    elif errors is not None:
        lines.append(f"  fileErrors: {_compact(errors)}")
    rest = {k: v for k, v in answer.items() if k not in ("message", "fileErrors")}
    if rest:
        lines.append(f"  also: {_compact(rest)}")
    return lines


def _earlier(earlier: object) -> list[str]:
    records = _dicts(earlier)
    if not records:
        return []
    lines = [f"earlier errors ({len(records)}, oldest first):"]
    for old in records:
        lines.append(f"  {old.get('finished', '?')} step {old.get('step')}: {old.get('reason')}")
    return lines


def _dicts(value: object) -> Sequence[dict[str, Any]]:
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, dict)]


def _compact(value: object) -> str:
    return json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
