"""Putting a failed batch back in line (`dropd retry`), with its files unchanged; `release`
(release.py) does the same for a held batch.

The batch is assembled in a staging folder that the daemon ignores, then renamed into the
spool in one step; the running owner adopts it at its next look at the spool:

    1. .dropd/work/.requeue-BATCH/manifest.json        state `claimed`, queued now
    2. failed/BATCH/error.json  → .requeue-BATCH/previous-error.json
    3. failed/BATCH/            → .requeue-BATCH/files/
    4. .requeue-BATCH/          → .dropd/work/BATCH/

A crash between steps is finished by `finish_staged` (at the daemon's start, or the next
`retry`), forwards, so each file still ends up exactly once in sent/ or failed/.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from daemon.config import load_config
from daemon.durable import fsync_dir, write_json_atomic
from daemon.errors import ConfigError, RequeueError
from daemon.manifest import BatchState, Manifest
from daemon.spool import Spool
from daemon.timestamps import iso, iso_precise, utc_now

STAGING_PREFIX = ".requeue-"
PREVIOUS_RECORD = "previous-error.json"


def retry_command(config_path: Path, group_key: str, batch_id: str) -> int:
    """`dropd retry`: 0 when the batch is back in line; 1 if it cannot be; 2 on a bad config."""
    return run_command(
        "retry",
        config_path,
        group_key,
        lambda spool: retry_failed(spool, batch_id, utc_now()),
        lambda manifest, files: (
            f"batch {batch_id} of group {group_key} is back in line with its {files} files "
            f"unchanged (attempts so far: {manifest.attempts}); the running dropd sends it"
        ),
    )


def run_command(
    command: str,
    config_path: Path,
    group_key: str,
    put_back: Callable[[Spool], Manifest],
    said: Callable[[Manifest, int], str],
) -> int:
    """`dropd retry` or `dropd release`: `put_back` the batch into the group's spool, then
    print `said` of it and its file count. 0 when it is in line; 1 if it cannot be; 2 on a
    bad config."""
    try:
        spool = group_spool(config_path, group_key)
        manifest = put_back(spool)
    except ConfigError as exc:
        print("\n".join(exc.problems), file=sys.stderr)
        return 2
    except RequeueError as exc:
        print(f"dropd {command}: {exc}", file=sys.stderr)
        return 1
    print(said(manifest, len(os.listdir(spool.files_dir(manifest.batch)))))
    return 0


def group_spool(config_path: Path, group_key: str) -> Spool:
    """The spool of group `group_key` of the config at `config_path`.

    Raises ConfigError if the config is bad, RequeueError if it has no such group.
    """
    config = load_config(config_path)
    group = config.groups.get(group_key)
    if group is None:
        known = ", ".join(sorted(config.groups)) or "none"
        raise RequeueError(f"{config_path}: there is no group {group_key!r} (groups: {known})")
    return Spool(group.folder, group.key)


def retry_failed(spool: Spool, batch_id: str, moment: datetime) -> Manifest:
    """Put `failed/BATCH` back in line, at its back, unchanged.

    Raises RequeueError if there is no such failed batch, or it cannot be retried.
    """
    finish_staged(spool)
    failed = spool.folder / "failed" / batch_id
    _refuse_unless_failed(spool, batch_id, failed)
    record_file = record_path(failed)
    record = read_record(record_file)
    if record.get("step") == "intake":
        raise RequeueError(
            f"batch {batch_id} failed at step intake ({record.get('reason')}): "
            "dropd would refuse it again; rename or fix the file and drop it "
            "again instead"
        )
    # A batch a person released and that then failed stays released: no guard again.
    released = (
        {"by": record.get("released_by"), "at": record.get("released_at")}
        if record.get("released")
        else None
    )
    manifest = requeued(spool, batch_id, record, moment, released)
    stage(spool, manifest, failed, record_file, PREVIOUS_RECORD, "retry")
    return manifest


def requeued(
    spool: Spool,
    batch_id: str,
    record: dict[str, Any],
    moment: datetime,
    released: dict[str, Any] | None,
) -> Manifest:
    """The manifest of a batch put back in line now, from the `record` it was failed or held
    with: claimed, queued at the back, its earlier records kept as its history."""
    earlier = record.pop("earlier_errors", None) or []
    return Manifest(
        batch_id,
        spool.group,
        BatchState.CLAIMED,
        created=str(record.get("created") or iso(moment)),
        attempts=int(record.get("attempts") or 0),
        queued=iso_precise(moment),
        history=[*earlier, record],
        released=released,
    )


def _refuse_unless_failed(spool: Spool, batch_id: str, failed: Path) -> None:
    if failed.is_dir():
        return
    if (spool.work / batch_id).exists():
        raise RequeueError(
            f"batch {batch_id} is already in line in {spool.work}; the running dropd sends it"
        )
    sent = sorted((spool.folder / "sent").glob(f"*/{batch_id}"))
    if sent:
        raise RequeueError(f"batch {batch_id} was sent (see {sent[0]}); there is nothing to retry")
    if (spool.folder / "held" / batch_id).is_dir():
        raise RequeueError(
            f"batch {batch_id} did not fail: the guard holds it in {spool.folder / 'held'}; "
            "`dropd release` sends it as it is"
        )
    raise RequeueError(
        f"there is no failed batch {batch_id} in {spool.folder / 'failed'}; "
        f"`ls {spool.folder / 'failed'}` lists the failed batches"
    )


def record_path(batch: Path, stem: str = "error") -> Path:
    """The record dropd left in a failed (or held) batch's folder.

    Raises RequeueError if there is none: then dropd did not put the folder there.
    """
    # Where a dropped file was called error.json, dropd's record is error.dropd.json.
    for name in (f"{stem}.dropd.json", f"{stem}.json"):
        if (batch / name).is_file():
            return batch / name
    what = "failed" if stem == "error" else "held"
    raise RequeueError(
        f"{batch} has no {stem}.json, so it is not a batch dropd {what}; "
        "drop its files again instead"
    )


def read_record(path: Path) -> dict[str, Any]:
    """A record's JSON. Raises RequeueError if it cannot be read or is no record."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RequeueError(
            f"{path} cannot be read ({exc}); drop the batch's files again instead"
        ) from exc
    if not isinstance(record, dict):
        raise RequeueError(f"{path} is not a dropd error record; drop the files again instead")
    return record


def stage(
    spool: Spool, manifest: Manifest, source: Path, record_file: Path, previous: str, command: str
) -> None:
    """Steps 1 to 4 above: `source` (failed/BATCH or held/BATCH) into the spool, its record
    kept aside as `previous`. Raises RequeueError if the disk refuses."""
    staging = spool.work / f"{STAGING_PREFIX}{manifest.batch}"
    try:
        spool.ensure()
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        write_json_atomic(staging / "manifest.json", manifest.to_json())
        _owned_like(source, staging, staging / "manifest.json")
        os.rename(record_file, staging / previous)
        os.rename(source, staging / "files")
        fsync_dir(source.parent)
        os.rename(staging, spool.batch_dir(manifest.batch))
        fsync_dir(spool.work)
    except OSError as exc:
        raise RequeueError(
            f"{source} cannot be put back in line: {exc.strerror or exc}; "
            f"run the same `dropd {command}` again once that is fixed"
        ) from exc


def _owned_like(model: Path, *made: Path) -> None:
    # Run as root, `retry` would leave the daemon (its own user) a batch it cannot write:
    # what it makes gets the owner of the failed (or held) batch, which the daemon made.
    if os.geteuid() != 0:
        return
    owner = model.stat()
    for path in made:
        os.chown(path, owner.st_uid, owner.st_gid)


def finish_staged(spool: Spool) -> list[str]:
    """Finish, forwards, any requeue a crash interrupted; returns the batch ids finished."""
    if not spool.work.is_dir():
        return []
    finished = []
    for staging in sorted(spool.work.glob(f"{STAGING_PREFIX}*")):
        batch_id = staging.name.removeprefix(STAGING_PREFIX)
        if not (staging / "manifest.json").is_file():
            shutil.rmtree(staging)  # step 1 never finished: nothing moved yet
            continue
        # A retry takes its files from failed/, a release from held/; never both.
        sources = [spool.folder / parent / batch_id for parent in ("failed", "held")]
        source = next((path for path in sources if path.is_dir()), None)
        if not (staging / "files").is_dir() and source is not None:
            os.rename(source, staging / "files")
        if (staging / "files").is_dir():
            os.rename(staging, spool.batch_dir(batch_id))
            fsync_dir(spool.work)
            finished.append(batch_id)
    return finished
