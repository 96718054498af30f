"""The on-disk batch: claim by rename, manifest (temp, fsync, rename), move to sent/ or failed/.

FOLDER/.dropd/lock                       one owner per folder (fcntl lock)
FOLDER/.dropd/work/BATCH/manifest.json   the batch's state, the truth after a crash
FOLDER/.dropd/work/BATCH/files/          the claimed originals (and their markers)
FOLDER/.dropd/work/BATCH/upload.zip      the ZIP once built
FOLDER/sent/YYYY-MM-DD/BATCH/            files + receipt.json
FOLDER/failed/BATCH/                     files + error.json
FOLDER/held/BATCH/                       files + held.json (the guard held it, rule 11)
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from daemon import crashpoints
from daemon.durable import fsync_dir, write_json_atomic
from daemon.errors import SpoolError, os_reason
from daemon.intake import ReadyFile, markers_for
from daemon.manifest import BatchState, Manifest
from daemon.timestamps import iso

SPOOL_DIR = ".dropd"
ZIP_NAME = "upload.zip"


def new_batch_id(moment: datetime) -> str:
    """A batch id that sorts by time: `20261123T085810.123456Z-3f9a`."""
    stamp = moment.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    return f"{stamp}-{secrets.token_hex(2)}"


def record_name(folder: Path, stem: str) -> str:
    """`STEM.json`, or `STEM.dropd.json` where a dropped file already bears that name."""
    plain = f"{stem}.json"
    return f"{stem}.dropd.json" if (folder / plain).exists() else plain


class Spool:
    """One group folder's batches on disk."""

    def __init__(self, folder: Path, group: str) -> None:
        self.folder = folder
        self.group = group
        self.root = folder / SPOOL_DIR
        self.work = self.root / "work"
        self._lock_fd: int | None = None

    def batch_dir(self, batch_id: str) -> Path:
        return self.work / batch_id

    def files_dir(self, batch_id: str) -> Path:
        return self.work / batch_id / "files"

    def zip_path(self, batch_id: str) -> Path:
        return self.work / batch_id / ZIP_NAME

    def part_path(self, batch_id: str, number: int) -> Path:
        return self.work / batch_id / f"upload-{number}.zip"

    def ensure(self) -> None:
        """Create `.dropd/work/` if missing. Raises SpoolError if it cannot."""
        try:
            self.work.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpoolError(self.work, os_reason(exc)) from exc

    def try_lock(self) -> bool:
        """Take the folder's owner lock without waiting; False if another dropd holds it."""
        if self._lock_fd is not None:
            return True
        self.ensure()
        fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            # flock, not lockf: held per open file, so even two groups of one process (a
            # reload that renames a group) exclude each other. Linux's NFS client carries
            # flock as a byte-range lock, which NFSv4 servers honour across hosts.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EACCES, errno.EAGAIN):
                return False
            raise SpoolError(self.root / "lock", os_reason(exc)) from exc
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd
        return True

    def unlock(self) -> None:
        """Let go of the owner lock."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def open_batch(self, moment: datetime) -> Manifest:
        """Create a new open batch. Raises SpoolError if the spool cannot be written."""
        manifest = Manifest(new_batch_id(moment), self.group, BatchState.OPEN, iso(moment))
        try:
            self.files_dir(manifest.batch).mkdir(parents=True)
            self.save(manifest)
        except (OSError, SpoolError) as exc:
            # A disk that is full must not fill up with half-made batch folders too.
            shutil.rmtree(self.batch_dir(manifest.batch), ignore_errors=True)
            reason = exc.reason if isinstance(exc, SpoolError) else os_reason(exc)
            # Named by the spool, not the new batch: the same problem reads the same each time.
            raise SpoolError(self.work, reason) from exc
        return manifest

    def claim(self, batch_id: str, ready: ReadyFile, sync: bool = True) -> bool:
        """Rename a ready file and its markers into the batch; False if it vanished, or
        changed since the scan that found it ready (the next pass decides again).

        With `sync=False` the caller makes the renames durable with `sync_claims`, once for
        all the files of a scan, and before the batch is closed (what acts on a claim).
        """
        target = self.files_dir(batch_id)
        try:
            now = os.lstat(self.folder / ready.name)
            if (now.st_size, now.st_mtime_ns) != (ready.size, ready.mtime_ns):
                return False
            os.rename(self.folder / ready.name, target / ready.name)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise SpoolError(self.folder / ready.name, os_reason(exc)) from exc
        for marker in ready.markers:
            with contextlib.suppress(FileNotFoundError):
                os.rename(self.folder / marker, target / marker)
        if sync:
            self.sync_claims(batch_id)
        return True

    def sync_claims(self, batch_id: str) -> None:
        """Make the renames into a batch durable: fsync its files/ and the drop folder.

        Raises SpoolError if the disk refuses.
        """
        try:
            fsync_dir(self.files_dir(batch_id))
            fsync_dir(self.folder)
        except OSError as exc:
            raise SpoolError(self.files_dir(batch_id), os_reason(exc)) from exc

    def file_count(self, batch_id: str) -> int:
        """How many files (markers included) the batch holds."""
        try:
            return len(os.listdir(self.files_dir(batch_id)))
        except FileNotFoundError:
            return 0

    def discard_empty(self, batch_id: str) -> None:
        """Remove a batch that holds no file. Raises SpoolError if it holds one."""
        if self.file_count(batch_id):
            raise SpoolError(self.batch_dir(batch_id), "the batch is not empty")
        try:
            shutil.rmtree(self.batch_dir(batch_id))
        except OSError as exc:
            raise SpoolError(self.batch_dir(batch_id), os_reason(exc)) from exc

    def save(self, manifest: Manifest) -> None:
        """Write the manifest atomically. Raises SpoolError if the disk refuses."""
        path = self.batch_dir(manifest.batch) / "manifest.json"
        try:
            write_json_atomic(path, manifest.to_json())
        except OSError as exc:
            raise SpoolError(path, os_reason(exc)) from exc

    def load(self, batch_id: str) -> Manifest:
        """Read a batch's manifest. Raises SpoolError if it is missing or unreadable."""
        path = self.batch_dir(batch_id) / "manifest.json"
        try:
            return Manifest.from_json(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise SpoolError(path, f"cannot read the batch manifest: {exc}") from exc

    def batch_ids(self) -> list[str]:
        """Every batch in the spool (by id; the line's order is `Manifest.queued`)."""
        if not self.work.is_dir():
            return []
        return sorted(
            p.name
            for p in self.work.iterdir()
            if not p.name.startswith(".") and (p / "manifest.json").exists()
        )

    def reunite_markers(self, batch_id: str, top_markers: list[str]) -> list[str]:
        """Move into the batch the top-level markers of its files (a crash came between a
        file's rename and its markers'), unless a new file of that name waits beside them."""
        files = self.files_dir(batch_id)
        moved = []
        for name in os.listdir(files):
            if (self.folder / name).exists():
                continue
            for marker in markers_for(name, top_markers):
                with contextlib.suppress(FileNotFoundError):
                    os.rename(self.folder / marker, files / marker)
                    moved.append(marker)
        return moved

    def clear_unfinished_folders(self) -> list[str]:
        """At start-up: give a manifest to a batch folder that has files but none (a crash
        between creating it and its first write), and remove the ones that are empty."""
        if not self.work.is_dir():
            return []
        adopted = []
        for path in sorted(self.work.iterdir()):
            if path.name.startswith(".") or (path / "manifest.json").exists():
                continue
            if self.file_count(path.name):
                moment = datetime.fromtimestamp(path.stat().st_mtime, UTC)
                self.save(Manifest(path.name, self.group, BatchState.OPEN, iso(moment)))
                adopted.append(path.name)
            else:
                shutil.rmtree(path)
        return adopted

    def finish(self, manifest: Manifest, record: dict[str, Any], moment: datetime) -> Path:
        """Record the outcome, then move the batch's files to sent/, failed/ or held/; returns
        where."""
        manifest.record = record
        # Named before it is written: after a crash our own receipt.json is no namesake.
        stem = record_stem(manifest.state)
        manifest.record_file = record_name(self.files_dir(manifest.batch), stem)
        self.save(manifest)
        crashpoints.reached("recorded")
        return self.complete_move(manifest, moment)

    def complete_move(self, manifest: Manifest, moment: datetime) -> Path:
        """Write the record beside the files and move them out; safe to repeat after a crash."""
        assert manifest.record is not None
        dest = self.destination(manifest, moment)
        source = self.files_dir(manifest.batch)
        try:
            if source.is_dir():
                name = manifest.record_file or f"{record_stem(manifest.state)}.json"
                write_json_atomic(source / name, manifest.record)
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.rename(source, dest)
                fsync_dir(dest.parent)
                crashpoints.reached("moved")
            shutil.rmtree(self.batch_dir(manifest.batch))
            fsync_dir(self.work)
        except OSError as exc:
            raise SpoolError(source, os_reason(exc)) from exc
        return dest

    def destination(self, manifest: Manifest, moment: datetime) -> Path:
        """`sent/YYYY-MM-DD/BATCH` (UTC date), `failed/BATCH` or `held/BATCH`."""
        if manifest.state is BatchState.SENT:
            day = str((manifest.record or {}).get("finished", iso(moment)))[:10]
            return self.folder / "sent" / day / manifest.batch
        if manifest.state is BatchState.HELD:
            return self.folder / "held" / manifest.batch
        return self.folder / "failed" / manifest.batch


def record_stem(state: BatchState) -> str:
    """The record a batch ends with: `receipt`, `held` or `error` (.json)."""
    return {BatchState.SENT: "receipt", BatchState.HELD: "held"}.get(state, "error")
