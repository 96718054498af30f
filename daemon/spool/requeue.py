"""Putting a failed batch back in line, with its files as they are in failed/BATCH/ (`dropd
retry`); `dropd release` does the same for a held batch.

A batch that failed at `validate` would fail the same way with the same files, so its retry
is refused until a person has fixed them in failed/BATCH/ (or forces it): error.json keeps
each file's size and SHA-256 as validation read them (`files_at_failure`), and the files
now are compared with those. A digest rather than a modification time: a `touch`, or a copy
of the same export put back, is no fix.

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

import contextlib
import json
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from daemon.base.durable import write_json_atomic
from daemon.base.errors import FolderError, RequeueError, SpoolError
from daemon.base.folders import Folder
from daemon.base.names import quoted
from daemon.base.regular import file_sha256, open_regular
from daemon.base.steps import Step
from daemon.base.timestamps import iso, iso_precise
from daemon.spool.history import RECORD_READ_LIMIT
from daemon.spool.manifest import BatchState, Manifest, Release
from daemon.spool.store import Spool

STAGING_PREFIX = ".requeue-"
PREVIOUS_RECORD = "previous-error.json"


@dataclass(frozen=True, slots=True)
class FiledRecord:
    """What `retry` and `release` read of the record a batch was failed or held with."""

    step: object  # as written: a `Step` value, unless someone else wrote the file
    reason: object
    created: str | None
    attempts: int
    released: Release | None  # a person released it before it failed: it stays released
    earlier: list[dict[str, Any]]  # its `earlier_errors`, as they were read
    rest: dict[str, Any]  # the record without them, as it was read: it joins the history

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FiledRecord:
        """The record read from error.json or held.json. Raises ValueError or TypeError if a
        figure in it is not one."""
        rest = dict(data)
        earlier = rest.pop("earlier_errors", None) or []
        released = (
            Release(_text_or_none(data.get("released_by")), _text_or_none(data.get("released_at")))
            if data.get("released")
            else None
        )
        return cls(
            step=data.get("step"),
            reason=data.get("reason"),
            created=str(data["created"]) if data.get("created") else None,
            attempts=int(data.get("attempts") or 0),
            released=released,
            earlier=list(earlier),
            rest=rest,
        )


@dataclass(frozen=True, slots=True)
class FileChanges:
    """How the files of a batch failed at `validate` differ from those validation read."""

    known: bool  # False: its error.json predates `files_at_failure`, so none can tell
    changed: tuple[str, ...] = ()  # edited, replaced, added or removed since, as shown
    unchanged: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Retried:
    """A failed batch back in line, and for one failed at `validate`, what changed."""

    manifest: Manifest
    changes: FileChanges | None  # None: it failed at another step, or was forced


def retry_batch(spool: Spool, batch_id: str, moment: datetime, *, force: bool = False) -> Retried:
    """Put `failed/BATCH` back in line, at its back, with its files as they are now.

    A batch failed at `validate` whose files are those validation refused is not put back
    unless `force`. Raises RequeueError if there is no such failed batch, or it cannot be
    retried.
    """
    finish_staged_for_command(spool)
    with filed_batch(spool, "failed", batch_id, _refuse_unless_failed) as (failed, batch):
        record_file = record_name_in(batch, "error")
        record = read_record(batch, record_file)
        if record.step == Step.INTAKE:
            raise RequeueError(
                f"batch {batch_id} failed at step intake ({record.reason}): "
                "dropd would refuse it again; rename or fix the file and drop it "
                "again instead"
            )
        changes = None
        if record.step == Step.VALIDATE and not force:
            changes = changes_since_failure(batch, record_file, record.rest)
            if changes.known and not changes.changed:
                raise RequeueError(_unchanged(batch, record.reason, spool.group))
        # A batch a person released and that then failed stays released: no guard again.
        manifest = requeued(spool, batch_id, record, moment, record.released)
        stage(spool, manifest, failed, batch, record_file, PREVIOUS_RECORD, "retry")
    return Retried(manifest, changes)


def _unchanged(batch: Folder, reason: object, group: str) -> str:
    return (
        f"batch {batch.shown.name} failed at step validate ({reason}), and its files in "
        f"{batch.shown} are still the ones validation refused, so it would fail again; fix "
        "or replace the files there, then run the same `dropd retry` again; `--force` "
        "sends them as they are"
    )


def changes_since_failure(batch: Folder, record_file: str, record: dict[str, Any]) -> FileChanges:
    """Which files of the failed batch differ from those its error record lists (size, then
    SHA-256); a file added or removed since counts as changed."""
    listed = record.get("files_at_failure")
    if not isinstance(listed, list):
        return FileChanges(known=False)
    before: dict[str, tuple[object, object]] = {}
    for entry in listed:
        if isinstance(entry, dict):
            before[_name_key(entry)] = (entry.get("bytes"), entry.get("sha256"))
    names = sorted(n for n in batch.names() if n != record_file)
    changed: list[str] = []
    unchanged: list[str] = []
    for name in names:
        key = os.fsencode(name).hex()
        same = key in before and _fingerprint(batch, name, before[key][0]) == before[key]
        (unchanged if same else changed).append(quoted(name))
        before.pop(key, None)
    changed += [f"{quoted(os.fsdecode(bytes.fromhex(key)))} (removed)" for key in before]
    return FileChanges(True, tuple(changed), tuple(unchanged))


def _name_key(entry: dict[str, Any]) -> str:
    # A name that is not UTF-8 is kept in `name_hex`: only its bytes say which file it was.
    if isinstance(entry.get("name_hex"), str):
        return str(entry["name_hex"])
    return os.fsencode(str(entry.get("name"))).hex()


def _fingerprint(batch: Folder, name: str, size: object) -> tuple[object, object]:
    """(bytes, sha256) of the file now; the digest only when the size is still `size`."""
    try:
        info = os.stat(name, dir_fd=batch.fd, follow_symlinks=False)
        if not stat.S_ISREG(info.st_mode) or info.st_size != size:
            return info.st_size, None
        digest = file_sha256(batch.io_path / name)
    except OSError:
        return None, None  # not readable now: changed, and the daemon says why
    return info.st_size, digest


def requeued(
    spool: Spool,
    batch_id: str,
    record: FiledRecord,
    moment: datetime,
    released: Release | None,
) -> Manifest:
    """The manifest of a batch put back in line now, from the `record` it was failed or held
    with: claimed, queued at the back, its earlier records kept as its history."""
    return Manifest(
        batch_id,
        spool.group,
        BatchState.CLAIMED,
        created=record.created or iso(moment),
        attempts=record.attempts,
        queued=iso_precise(moment),
        history=[*record.earlier, record.rest],
        released=released,
    )


def _refuse_unless_failed(spool: Spool, batch_id: str) -> RequeueError:
    failed = spool.folder / "failed"
    if spool.exists(batch_id):
        return RequeueError(
            f"batch {batch_id} is already in line in {spool.work_shown}; the running dropd sends it"
        )
    sent = sent_batch(spool, batch_id)
    if sent is not None:
        return RequeueError(f"batch {batch_id} was sent (see {sent}); there is nothing to retry")
    if filed(spool, "held", batch_id):
        return RequeueError(
            f"batch {batch_id} did not fail: the guard holds it in {spool.folder / 'held'}; "
            "`dropd release` sends it as it is"
        )
    return RequeueError(
        f"there is no failed batch {batch_id} in {failed}; `ls {failed}` lists the failed batches"
    )


@contextlib.contextmanager
def filed_batch(
    spool: Spool, parent: str, batch_id: str, refusal: Callable[[Spool, str], RequeueError]
) -> Iterator[tuple[Folder, Folder]]:
    """`parent/BATCH` (failed/ or held/) and its parent, held without following a link.

    Raises RequeueError (from `refusal` when there is no such batch) if either is missing,
    a link or not a folder.
    """
    try:
        above = spool.root.find(parent)
        batch = above.find(batch_id) if above is not None else None
    except FolderError as exc:
        raise RequeueError(f"{exc.reason}; dropd never works through a link") from exc
    if above is None or batch is None:
        if above is not None:
            above.close()
        raise refusal(spool, batch_id)
    with above, batch:
        yield above, batch


def filed(spool: Spool, parent: str, batch_id: str) -> bool:
    """True when `parent/BATCH` (failed/ or held/) is there; a parent that is a link or
    cannot be read counts as without it."""
    try:
        with spool.root.sub(parent) as above:
            return above.entry_identity(batch_id) is not None
    except (OSError, FolderError):
        return False


def sent_batch(spool: Spool, batch_id: str) -> Path | None:
    """Where under sent/ the batch was filed, if it was."""
    try:
        with spool.root.sub("sent") as sent:
            for day in sorted(sent.names()):
                with contextlib.suppress(OSError, FolderError), sent.sub(day) as dated:
                    if dated.entry_identity(batch_id) is not None:
                        return spool.folder / "sent" / day / batch_id
    except (OSError, FolderError):
        return None
    return None


def record_name_in(batch: Folder, stem: str = "error") -> str:
    """The name of the record dropd left in a failed (or held) batch's folder.

    Raises RequeueError if there is none: then dropd did not put the folder there.
    """
    # Where a dropped file was called error.json, dropd's record is error.dropd.json.
    for name in (f"{stem}.dropd.json", f"{stem}.json"):
        with contextlib.suppress(OSError):
            if stat.S_ISREG(os.stat(name, dir_fd=batch.fd, follow_symlinks=False).st_mode):
                return name
    what = "failed" if stem == "error" else "held"
    raise RequeueError(
        f"{batch.shown} has no {stem}.json, so it is not a batch dropd {what}; "
        "drop its files again instead"
    )


def read_record(batch: Folder, name: str) -> FiledRecord:
    """A record dropd filed. Raises RequeueError if it cannot be read or is no record."""
    path = batch.shown / name
    try:
        with open_regular(batch.io_path / name) as source:
            record = json.loads(source.read(RECORD_READ_LIMIT))
    except (OSError, ValueError) as exc:
        raise RequeueError(
            f"{path} cannot be read ({exc}); drop the batch's files again instead"
        ) from exc
    if not isinstance(record, dict):
        raise RequeueError(f"{path} is not a dropd error record; drop the files again instead")
    return FiledRecord.from_json(record)


def stage(
    spool: Spool,
    manifest: Manifest,
    parent: Folder,
    batch: Folder,
    record_file: str,
    previous: str,
    command: str,
) -> None:
    """Steps 1 to 4 above: `parent/BATCH` (failed/ or held/) into the spool, its record kept
    aside as `previous`. Raises RequeueError if the disk refuses."""
    staging = f"{STAGING_PREFIX}{manifest.batch}"
    work = spool.work_folder
    try:
        shutil.rmtree(staging, ignore_errors=True, dir_fd=work.fd)
        os.mkdir(staging, 0o700, dir_fd=work.fd)
        write_json_atomic(spool.work / staging / "manifest.json", manifest.to_json())
        _owned_like(batch, spool.work / staging, spool.work / staging / "manifest.json")
        os.rename(record_file, f"{staging}/{previous}", src_dir_fd=batch.fd, dst_dir_fd=work.fd)
        os.rename(manifest.batch, f"{staging}/files", src_dir_fd=parent.fd, dst_dir_fd=work.fd)
        parent.fsync()
        os.rename(staging, manifest.batch, src_dir_fd=work.fd, dst_dir_fd=work.fd)
        work.fsync()
    except OSError as exc:
        raise RequeueError(
            f"{batch.shown} cannot be put back in line: {exc.strerror or exc}; "
            f"run the same `dropd {command}` again once that is fixed"
        ) from exc


def finish_staged_for_command(spool: Spool) -> None:
    """`finish_staged` for a command: what stops it is a RequeueError."""
    try:
        finish_staged(spool)
    except SpoolError as exc:
        raise RequeueError(f"{spool.show(str(exc))}; fix that, then run the command again") from exc


def _owned_like(model: Folder, *made: Path) -> None:
    # Run as root, `retry` would leave the daemon (its own user) a batch it cannot write:
    # what it makes gets the owner of the failed (or held) batch, which the daemon made.
    if os.geteuid() != 0:
        return
    owner = os.fstat(model.fd)
    for path in made:
        os.chown(path, owner.st_uid, owner.st_gid)


def finish_staged(spool: Spool) -> list[str]:
    """Finish, forwards, any requeue a crash interrupted; returns the batch ids finished.

    Raises SpoolError if the spool cannot be held (FolderError: `.dropd` is a link)."""
    spool.open()
    work = spool.work_folder
    finished = []
    for staging in sorted(n for n in work.names() if n.startswith(STAGING_PREFIX)):
        batch_id = staging.removeprefix(STAGING_PREFIX)
        if not os.path.lexists(spool.work / staging / "manifest.json"):
            shutil.rmtree(staging, dir_fd=work.fd)  # step 1 never finished: nothing moved yet
            continue
        if not os.path.lexists(spool.work / staging / "files"):
            # A retry takes its files from failed/, a release from held/; never both.
            for parent in ("failed", "held"):
                if filed(spool, parent, batch_id):
                    with spool.root.sub(parent) as above:
                        os.rename(
                            batch_id, f"{staging}/files", src_dir_fd=above.fd, dst_dir_fd=work.fd
                        )
                    break
        if os.path.lexists(spool.work / staging / "files"):
            os.rename(staging, batch_id, src_dir_fd=work.fd, dst_dir_fd=work.fd)
            work.fsync()
            finished.append(batch_id)
    return finished


def _text_or_none(value: object) -> str | None:
    """A field of a record as text, or None where the record has none (it stays null)."""
    return None if value is None else str(value)
