"""The batches of a group folder, read for `dropd list` and `dropd show`: those waiting in
`.dropd/work`, and those filed under `sent/DAY/`, `failed/` and `held/`, each with the record
dropd left beside it.

It only reads: nothing is created, moved or locked, so it is safe beside a running dropd;
a batch that moves while it is read is simply seen in one place or the other. Folders are
opened without following a link, as the daemon opens them.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from daemon.base.folders import Folder
from daemon.base.names import shown
from daemon.base.records import for_people
from daemon.spool.history import (
    batch_names,
    is_batch_id,
    open_child,
    read_json,
    record_names,
    text_or_none,
)
from daemon.spool.manifest import BatchState
from daemon.spool.store import SPOOL_DIR

__all__ = ["Batch", "BatchFile", "Place", "find_batch", "is_batch_id", "list_batches"]

_MANIFEST = "manifest.json"


class Place(enum.StrEnum):
    """Where a batch is: in line, or filed."""

    WAITING = "waiting"
    SENT = "sent"
    FAILED = "failed"
    HELD = "held"


# The record each place keeps beside the batch's files.
_RECORD_STEM = {Place.SENT: "receipt", Place.FAILED: "error", Place.HELD: "held"}

# What a waiting batch is doing, by the state its manifest says.
_DOING = {
    BatchState.OPEN: "open: files are still joining",
    BatchState.CLAIMED: "in line",
    BatchState.ZIPPED: "zipped, in line",
    BatchState.UPLOADING: "uploading",
    BatchState.SENT: "sent; being filed",
    BatchState.FAILED: "failed; being filed",
    BatchState.HELD: "held; being filed",
}


@dataclass(frozen=True, slots=True)
class BatchFile:
    name: str
    bytes: int | None
    kind: str | None  # users, courses, ... as the checks typed it; None when not known


@dataclass(frozen=True, slots=True)
class Batch:
    """One batch of a group, with what its record says."""

    batch: str
    group: str
    place: Place
    folder: Path  # where its files are now
    files: tuple[BatchFile, ...]  # as its record lists them
    more_files: int  # files the record left out of its list (a long list is cut)
    when: str | None  # filed: when it ended (held: when it was held); waiting: when queued
    step: str | None  # failed and held: the step
    reason: str  # one line: why it failed or is held, what a waiting batch is doing
    status: int | None  # the HTTP status of the answer that decided it
    record_file: str | None  # receipt.json, error.dropd.json, manifest.json, ...
    # The record as stored (the JSON boundary: `dropd show --json` prints it); None when
    # it cannot be read.
    record: dict[str, Any] | None

    @property
    def moment(self) -> datetime:
        """`when` as a time, else the time in the batch id: what "newest first" sorts by."""
        return _parsed(self.when) or _id_time(self.batch) or datetime.min.replace(tzinfo=UTC)


def _parsed(text: str | None) -> datetime | None:
    try:
        moment = datetime.fromisoformat((text or "").replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _id_time(batch_id: str) -> datetime | None:
    if not is_batch_id(batch_id):
        return None
    moment = batch_id.partition("-")[0]
    return datetime.strptime(moment, "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC)


def list_batches(folder: Path, group: str) -> list[Batch]:
    """Every batch of the group folder, newest first.

    Raises FolderError if the folder itself cannot be opened; a part of it that is missing,
    a link or unreadable holds no batches.
    """
    batches: list[Batch] = []
    with Folder.at(folder) as root:
        for place, parent in _places(root):
            with parent:
                batches += [_read(parent, name, place, group) for name in batch_names(parent)]
    return sorted(batches, key=lambda b: (b.moment, b.batch), reverse=True)


def find_batch(folder: Path, group: str, batch_id: str) -> Batch | None:
    """The batch `batch_id` of the group folder, wherever it is; None if there is none.

    Raises FolderError if the folder itself cannot be opened.
    """
    if not is_batch_id(batch_id):
        return None  # never a path: "../x" must not reach outside the folder
    with Folder.at(folder) as root:
        for place, parent in _places(root):
            with parent:
                if batch_id in batch_names(parent):
                    return _read(parent, batch_id, place, group)
    return None


def _places(root: Folder) -> Iterator[tuple[Place, Folder]]:
    """Each folder that holds batches, with their place: .dropd/work, sent/DAY, failed, held.
    The caller closes each."""
    spool = open_child(root, SPOOL_DIR)
    if spool is not None:
        with spool:
            work = open_child(spool, "work")
        if work is not None:
            yield Place.WAITING, work
    sent = open_child(root, "sent")
    if sent is not None:
        with sent:
            days = sorted(_subfolders(sent))
            for day in days:
                dated = open_child(sent, day)
                if dated is not None:
                    yield Place.SENT, dated
    for place in (Place.FAILED, Place.HELD):
        parent = open_child(root, place.value)
        if parent is not None:
            yield place, parent


def _subfolders(parent: Folder) -> list[str]:
    try:
        return [n for n in parent.names() if not n.startswith(".")]
    except OSError:
        return []


def _read(parent: Folder, name: str, place: Place, group: str) -> Batch:
    where = parent.shown / name
    batch = open_child(parent, name)
    if batch is None:
        return _unread(name, group, place, where, "it cannot be opened", ())
    with batch:
        stems = (_MANIFEST,) if place is Place.WAITING else record_names(_RECORD_STEM[place])
        names = _names(batch)
        for record_file in stems:
            if record_file in names and (data := read_json(batch, record_file)) is not None:
                return _from_record(name, group, place, where, record_file, data)
    files = tuple(BatchFile(shown(n), None, None) for n in names if not _is_record(n, place))
    what = "manifest.json" if place is Place.WAITING else f"{_RECORD_STEM[place]}.json"
    return _unread(name, group, place, where, f"it has no readable {what}", files)


def _is_record(name: str, place: Place) -> bool:
    return place is Place.WAITING or name in record_names(_RECORD_STEM[place])


def _names(batch: Folder) -> list[str]:
    try:
        return sorted(batch.names())
    except OSError:
        return []


def _unread(
    name: str, group: str, place: Place, where: Path, why: str, files: tuple[BatchFile, ...]
) -> Batch:
    reason = f"{where}: {why}"
    return Batch(name, group, place, where, files, 0, None, None, reason, None, None, None)


def _from_record(
    name: str, group: str, place: Place, where: Path, record_file: str, data: dict[str, Any]
) -> Batch:
    # Records hold no secret, but a server's answer in one is text from outside: shown only
    # as redacted and cut as every record dropd writes.
    data = for_people(data)
    files = tuple(_file(f) for f in data.get("files") or () if isinstance(f, dict))
    more = data.get("files_not_listed")
    more_files = more if isinstance(more, int) and not isinstance(more, bool) else 0
    step = text_or_none(data.get("step"))
    status = data.get("status") if isinstance(data.get("status"), int) else None
    if place is Place.WAITING:
        folder = where / "files"
        when = text_or_none(data.get("queued")) or text_or_none(data.get("created"))
        reason = _doing(data)
    else:
        folder = where
        when = text_or_none(data.get("held" if place is Place.HELD else "finished"))
        reason = text_or_none(data.get("reason")) or ""
        if place is Place.SENT:
            reason = "sent" if status is None else f"sent, {status}"
    return Batch(
        name, group, place, folder, files, more_files, when, step, reason, status, record_file, data
    )


def _doing(manifest: dict[str, Any]) -> str:
    try:
        doing = _DOING[BatchState(manifest.get("state"))]
    except ValueError:
        return "in the spool"
    attempts = manifest.get("attempts")
    if isinstance(attempts, int) and attempts > 0:
        doing += f" (attempts so far: {attempts})"
    return doing


def _file(data: dict[str, Any]) -> BatchFile:
    size = data.get("bytes")
    return BatchFile(
        shown(str(data.get("name", "?"))),
        size if isinstance(size, int) and not isinstance(size, bool) else None,
        text_or_none(data.get("kind")),
    )
