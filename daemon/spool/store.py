"""The on-disk batch: claim by rename, manifest (temp, fsync, rename), move to sent/ or failed/.

FOLDER/.dropd/lock                       one owner per folder (flock)
FOLDER/.dropd/work/BATCH/manifest.json   the batch's state, the truth after a crash
FOLDER/.dropd/work/BATCH/files/          the claimed originals (and their markers)
FOLDER/.dropd/work/BATCH/unpacked/       a dropped ZIP's entries, only while it is packed
FOLDER/.dropd/work/BATCH/upload.zip      the ZIP once built
FOLDER/sent/YYYY-MM-DD/BATCH/            files + receipt.json
FOLDER/failed/BATCH/                     files + error.json
FOLDER/held/BATCH/                       files + held.json (the guard held it)

The spool holds the drop folder, `.dropd/work` and the lock by descriptor (`folders`): the
drop folder's other writers can replace any name in it, but nothing dropd claims, writes or
files is ever reached through a link or a path resolved again. `.dropd` is made 0700, so
what is inside it is dropd's alone. The paths this class hands out (`batch_dir`, ...) go
through `/proc/self/fd`; `show` turns them back into the folder's path for messages.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from daemon.base import crashpoints
from daemon.base.durable import fsync_dir, write_json_atomic
from daemon.base.errors import FolderError, SpoolError, os_reason
from daemon.base.folders import Folder, Identity, problem_of
from daemon.base.locks import LockHeld, take_lock
from daemon.base.timestamps import iso
from daemon.intake.readiness import ReadyFile, markers_for
from daemon.spool.manifest import BatchState, FileRecord, Manifest

SPOOL_DIR = ".dropd"
ZIP_NAME = "upload.zip"
UNPACKED = "unpacked"  # a dropped ZIP's entries, unpacked to be checked and zipped again
FILED = ("sent", "failed", "held")  # where batches end, beside the files people drop
_LOCK = "lock"


def new_batch_id(moment: datetime) -> str:
    """A batch id that sorts by time: `20261123T085810.123456Z-3f9a`."""
    stamp = moment.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    return f"{stamp}-{secrets.token_hex(2)}"


def record_name(folder: Path, stem: str) -> str:
    """`STEM.json`, or `STEM.dropd.json` where a dropped file already bears that name."""
    plain = f"{stem}.json"
    return f"{stem}.dropd.json" if os.path.lexists(folder / plain) else plain


class Spool:
    """One group folder's batches on disk, held by descriptor once `open`."""

    def __init__(self, folder: Path, group: str) -> None:
        self.folder = folder
        self.group = group
        self._root: Folder | None = None
        self._work: Folder | None = None
        self._spool_id: Identity | None = None  # `.dropd` as opened
        self._root_id: Identity | None = None  # the drop folder as opened
        self._lock_fd: int | None = None
        self._lock_id: Identity | None = None

    # -- holding the folder -----------------------------------------------------------------

    def open(self) -> None:
        """Hold the drop folder and `.dropd/work` (made if missing) by descriptor.

        Raises FolderError if the folder is not there, or `.dropd` or `.dropd/work` is a
        link or not a folder; SpoolError if they cannot be made.
        """
        if self._root is not None:
            return
        root = Folder.at(self.folder)
        try:
            with root.sub(SPOOL_DIR, create=True, mode=0o700) as spool:
                self._spool_id = spool.identity()
                self._work = spool.sub("work", create=True, mode=0o700)
        except BaseException:
            root.close()
            raise
        self._root = root
        self._root_id = root.identity()

    @property
    def opened(self) -> bool:
        return self._root is not None

    @property
    def root(self) -> Folder:
        """The drop folder as held. Raises SpoolError before `open`."""
        if self._root is None:
            raise SpoolError(self.folder, "the folder is not held (dropd did not open it)")
        return self._root

    @property
    def work_folder(self) -> Folder:
        if self._work is None:
            raise SpoolError(self.folder / SPOOL_DIR / "work", "the spool is not held")
        return self._work

    @property
    def work(self) -> Path:
        """`.dropd/work` as held (a `/proc/self/fd` path)."""
        return self.work_folder.io_path

    @property
    def work_shown(self) -> Path:
        return self.folder / SPOOL_DIR / "work"

    def try_lock(self) -> bool:
        """Hold the folder and take its owner lock without waiting; False if another dropd
        holds it. Raises FolderError or SpoolError as `open`."""
        if self._lock_fd is not None:
            return True
        self.open()
        lock_path = self.folder / SPOOL_DIR / _LOCK
        try:
            fd = take_lock(f"{SPOOL_DIR}/{_LOCK}", dir_fd=self.root.fd)
        except LockHeld:
            return False
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EINVAL):
                what = "a symbolic link" if exc.errno == errno.ELOOP else "not a regular file"
                why = f"{lock_path} is {what}; remove it (dropd makes the lock)"
                raise FolderError(lock_path, why) from exc
            raise SpoolError(lock_path, os_reason(exc)) from exc
        self._lock_fd = fd
        held = os.fstat(fd)
        self._lock_id = (held.st_dev, held.st_ino)
        return True

    def unlock(self) -> None:
        """Let go of the owner lock and of the folder."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        for held in (self._work, self._root):
            if held is not None:
                held.close()
        self._root = self._work = None
        self._spool_id = self._root_id = None

    def lost(self) -> str | None:
        """Why the folder held is no longer the group's (the folder, `.dropd` or the lock was
        removed or replaced), as a sentence; None while everything is as it was taken.

        Told by device and inode (and the flags of the mount it is seen through), never by
        path: a folder made again at the same path is another folder, which dropd must lock
        before it touches it.
        """
        if self._root is None:
            return None
        try:
            now = os.stat(self.folder)
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
                return None  # cannot look now (a share's hiccup): the scan says so
            return (
                f"{self.folder} is gone (removed, moved away or unmounted); dropd takes it "
                "again, with its lock, once it is back"
            )
        if (now.st_dev, now.st_ino) != self._root_id:
            return (
                f"{self.folder} was replaced by another folder (its device and inode changed; "
                f"the old one is now at {self._root.where()}); dropd takes the new one, "
                "with its lock, before it touches it"
            )
        if _mount_flags(self.folder) not in (None, self._root.mount_flags()):
            return (
                f"{self.folder} is now seen through another mount (something was mounted over "
                "it, read-only maybe); dropd takes it again as it now is, lock first"
            )
        if self._root.entry_identity(SPOOL_DIR) != self._spool_id:
            return (
                f"{self.folder / SPOOL_DIR} was removed or replaced while dropd held it; "
                "dropd takes the folder again, with its lock"
            )
        if self._lock_fd is not None and not self._holds_lock_entry():
            return (
                f"{self.folder / SPOOL_DIR / _LOCK} was removed or replaced, so another dropd "
                "could take the folder; dropd takes its lock again"
            )
        return None

    def _holds_lock_entry(self) -> bool:
        try:
            entry = os.stat(f"{SPOOL_DIR}/{_LOCK}", dir_fd=self.root.fd, follow_symlinks=False)
        except OSError:
            return False
        return (entry.st_dev, entry.st_ino) == self._lock_id

    def layout_problems(self, moment: datetime) -> list[str]:
        """Why `sent/`, `failed/`, `held/` or today's `sent/YYYY-MM-DD/` cannot take batches
        (a link, a file), as sentences; [] when each is a folder or absent."""
        found = [p for name in FILED if (p := problem_of(self.root, name)) is not None]
        if found:
            return found
        try:
            sent = self.root.find("sent")
        except FolderError as exc:
            return [exc.reason]
        if sent is None:
            return []
        with sent:
            dated = problem_of(sent, iso(moment)[:10])
        return [dated] if dated else []

    def show(self, text: str) -> str:
        """`text` with the spool's `/proc/self/fd` paths written as the folder's own."""
        for held, shown in ((self._work, self.work_shown), (self._root, self.folder)):
            if held is not None:  # /proc/self/fd/12, never the start of /proc/self/fd/123
                pattern = re.escape(str(held.io_path)) + r"(?![0-9])"
                text = re.sub(pattern, str(shown).replace("\\", "\\\\"), text)
        return text

    # -- batches ----------------------------------------------------------------------------

    def batch_dir(self, batch_id: str) -> Path:
        return self.work / batch_id

    def files_dir(self, batch_id: str) -> Path:
        return self.work / batch_id / "files"

    def unpacked_dir(self, batch_id: str) -> Path:
        return self.work / batch_id / UNPACKED

    def fresh_unpacked_dir(self, batch_id: str) -> Path:
        """An empty `unpacked/` for the batch's dropped ZIP; whatever an earlier try (cut
        short by a crash, maybe) left there is removed: the ZIP in files/ is the truth.

        Raises SpoolError if the disk refuses.
        """
        self.clear_unpacked(batch_id)
        try:
            os.mkdir(f"{batch_id}/{UNPACKED}", 0o700, dir_fd=self.work_folder.fd)
        except OSError as exc:
            raise SpoolError(self.work_shown / batch_id / UNPACKED, os_reason(exc)) from exc
        return self.unpacked_dir(batch_id)

    def clear_unpacked(self, batch_id: str) -> None:
        """Remove the batch's `unpacked/`, if it has one. Raises SpoolError if the disk refuses."""
        try:
            shutil.rmtree(f"{batch_id}/{UNPACKED}", dir_fd=self.work_folder.fd)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise SpoolError(self.work_shown / batch_id / UNPACKED, os_reason(exc)) from exc

    def zip_path(self, batch_id: str) -> Path:
        return self.work / batch_id / ZIP_NAME

    def part_path(self, batch_id: str, number: int) -> Path:
        return self.work / batch_id / f"upload-{number}.zip"

    def open_batch(self, moment: datetime, refused: str | None = None) -> Manifest:
        """Create a new open batch (`refused`: the reason its one file fails at intake, known
        before the file is claimed). Raises SpoolError if the spool cannot be written."""
        manifest = Manifest(new_batch_id(moment), self.group, BatchState.OPEN, iso(moment))
        manifest.refused = refused
        work = self.work_folder
        try:
            os.mkdir(manifest.batch, 0o700, dir_fd=work.fd)
            os.mkdir(f"{manifest.batch}/files", 0o700, dir_fd=work.fd)
            self.save(manifest)
        except (OSError, SpoolError) as exc:
            # A disk that is full must not fill up with half-made batch folders too.
            with contextlib.suppress(OSError):
                shutil.rmtree(manifest.batch, dir_fd=work.fd)
            reason = exc.reason if isinstance(exc, SpoolError) else os_reason(exc)
            # Named by the spool, not the new batch: the same problem reads the same each time.
            raise SpoolError(self.work_shown, reason) from exc
        return manifest

    def intend(self, manifest: Manifest, ready: Iterable[ReadyFile]) -> None:
        """Write in the batch's manifest, before they are claimed, the files about to join
        it with their kinds: a crash at any moment of the claim cannot change what happens
        to them. Raises SpoolError if the disk refuses."""
        listed = {record.name for record in manifest.files}
        manifest.files += [
            FileRecord(
                r.name, r.size, kind=r.kind.value, markers=list(r.markers), mtime_ns=r.mtime_ns
            )
            for r in ready
            if r.name not in listed
        ]
        self.save(manifest)
        crashpoints.reached("intended")

    def claim(self, batch_id: str, ready: ReadyFile, sync: bool = True) -> bool:
        """Rename a ready file and its markers into the batch; False if it vanished, or
        changed since the scan that found it ready (the next pass decides again).

        With `sync=False` the caller makes the renames durable with `sync_claims`, once for
        all the files of a scan, and before the batch is closed (what acts on a claim).
        """
        root, work = self.root, self.work_folder
        try:
            now = os.stat(ready.name, dir_fd=root.fd, follow_symlinks=False)
            if not stat.S_ISREG(now.st_mode) or _changed(now, ready):
                return False
            os.rename(
                ready.name,
                f"{batch_id}/files/{ready.name}",
                src_dir_fd=root.fd,
                dst_dir_fd=work.fd,
            )
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise SpoolError(self.folder / ready.name, os_reason(exc)) from exc
        for marker in ready.markers:
            with contextlib.suppress(FileNotFoundError):
                os.rename(
                    marker, f"{batch_id}/files/{marker}", src_dir_fd=root.fd, dst_dir_fd=work.fd
                )
        if sync:
            self.sync_claims(batch_id)
        return True

    def sync_claims(self, batch_id: str) -> None:
        """Make the renames into a batch durable: fsync its files/ and the drop folder.

        Raises SpoolError if the disk refuses.
        """
        try:
            fsync_dir(self.files_dir(batch_id))
            fsync_dir(self.root.io_path)
        except OSError as exc:
            raise SpoolError(self.work_shown / batch_id / "files", os_reason(exc)) from exc

    def file_names(self, batch_id: str) -> list[str]:
        """The files (markers included) the batch holds, sorted; [] if it has no files/."""
        try:
            return sorted(os.listdir(self.files_dir(batch_id)))
        except FileNotFoundError:
            return []

    def file_count(self, batch_id: str) -> int:
        """How many files (markers included) the batch holds."""
        return len(self.file_names(batch_id))

    def discard_empty(self, batch_id: str) -> None:
        """Remove a batch that holds no file. Raises SpoolError if it holds one."""
        if self.file_count(batch_id):
            raise SpoolError(self.work_shown / batch_id, "the batch is not empty")
        try:
            shutil.rmtree(batch_id, dir_fd=self.work_folder.fd)
        except OSError as exc:
            raise SpoolError(self.work_shown / batch_id, os_reason(exc)) from exc

    def exists(self, batch_id: str) -> bool:
        """True when the batch's folder is in the spool."""
        return self.work_folder.entry_identity(batch_id) is not None

    def save(self, manifest: Manifest) -> None:
        """Write the manifest atomically. Raises SpoolError if the disk refuses."""
        path = self.batch_dir(manifest.batch) / "manifest.json"
        try:
            write_json_atomic(path, manifest.to_json())
        except OSError as exc:
            raise SpoolError(self.work_shown / manifest.batch, os_reason(exc)) from exc

    def load(self, batch_id: str) -> Manifest:
        """Read a batch's manifest. Raises SpoolError if it is missing or unreadable."""
        path = self.batch_dir(batch_id) / "manifest.json"
        try:
            return Manifest.from_json(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError, KeyError) as exc:
            shown = self.work_shown / batch_id / "manifest.json"
            raise SpoolError(
                shown, f"cannot read the batch manifest: {self.show(str(exc))}"
            ) from exc

    def batch_ids(self) -> list[str]:
        """Every batch in the spool (by id; the line's order is `Manifest.queued`)."""
        if self._work is None:
            return []
        return sorted(
            name
            for name in self._work.names()
            if not name.startswith(".") and os.path.lexists(self.work / name / "manifest.json")
        )

    def reunite_markers(self, batch_id: str, top_markers: list[str]) -> list[str]:
        """Move into the batch the top-level markers of its files (a crash came between a
        file's rename and its markers'), unless a new file of that name waits beside them."""
        root, work = self.root, self.work_folder
        moved = []
        for name in self.file_names(batch_id):
            if root.entry_identity(name) is not None:
                continue
            for marker in markers_for(name, top_markers):
                with contextlib.suppress(FileNotFoundError):
                    os.rename(
                        marker, f"{batch_id}/files/{marker}", src_dir_fd=root.fd, dst_dir_fd=work.fd
                    )
                    moved.append(marker)
        return moved

    def clear_unfinished_folders(self) -> list[str]:
        """At start-up: give a manifest to a batch folder that has files but none (a crash
        between creating it and its first write), and remove the ones that are empty."""
        if self._work is None:
            return []
        adopted = []
        for name in sorted(self._work.names()):
            if name.startswith(".") or os.path.lexists(self.work / name / "manifest.json"):
                continue
            if self.file_count(name):
                moment = datetime.fromtimestamp((self.work / name).stat().st_mtime, UTC)
                self.save(Manifest(name, self.group, BatchState.OPEN, iso(moment)))
                adopted.append(name)
            else:
                shutil.rmtree(name, dir_fd=self._work.fd)
        return adopted

    # -- how a batch ends -------------------------------------------------------------------

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
        """Write the record beside the files and move them out; safe to repeat after a crash.

        Raises FolderError if sent/, failed/ or held/ (or sent/DATE/) is a link or not a
        folder: nothing is filed then, and the batch waits in the spool. SpoolError if the
        disk refuses.
        """
        assert manifest.record is not None
        where = self.destination_names(manifest, moment)
        shown = self.where_now().joinpath(*where, manifest.batch)
        work, batch = self.work_folder, manifest.batch
        try:
            if work.entry_identity(f"{batch}/files") is not None:
                name = manifest.record_file or f"{record_stem(manifest.state)}.json"
                write_json_atomic(self.files_dir(batch) / name, manifest.record)
                with self._filed_folder(where) as target:
                    _move_in(work, f"{batch}/files", target, batch, shown)
                crashpoints.reached("moved")
            shutil.rmtree(batch, dir_fd=work.fd)
            work.fsync()
        except FolderError:
            raise
        except OSError as exc:
            raise SpoolError(shown, os_reason(exc)) from exc
        return shown

    def _filed_folder(self, names: tuple[str, ...]) -> Folder:
        folder = self.root.sub(names[0], create=True)
        for name in names[1:]:
            with folder:
                folder = folder.sub(name, create=True)
        return folder

    def where_now(self) -> Path:
        """The drop folder's path: as configured, or where the held folder was moved to."""
        root = self.root
        try:
            info = os.stat(self.folder)
        except OSError:
            return Path(root.where())
        if (info.st_dev, info.st_ino) == root.identity():
            return self.folder
        return Path(root.where())

    def destination_names(self, manifest: Manifest, moment: datetime) -> tuple[str, ...]:
        """`sent/YYYY-MM-DD` (UTC date), `failed` or `held`: where the batch's folder goes."""
        if manifest.state is BatchState.SENT:
            day = str((manifest.record or {}).get("finished", iso(moment)))[:10]
            return ("sent", day)
        if manifest.state is BatchState.HELD:
            return ("held",)
        return ("failed",)

    def destination(self, manifest: Manifest, moment: datetime) -> Path:
        """`sent/YYYY-MM-DD/BATCH` (UTC date), `failed/BATCH` or `held/BATCH`."""
        return self.folder.joinpath(*self.destination_names(manifest, moment), manifest.batch)


def _mount_flags(path: Path) -> int | None:
    # A folder bind-mounted over itself (read-only, say) is the same inode seen otherwise.
    try:
        return os.statvfs(path).f_flag
    except OSError:
        return None


def _changed(now: os.stat_result, ready: ReadyFile) -> bool:
    seen = (ready.size, ready.mtime_ns, ready.inode or now.st_ino)
    return (now.st_size, now.st_mtime_ns, now.st_ino) != seen


def _move_in(source: Folder, name: str, target: Folder, batch: str, shown: Path) -> None:
    """Rename `name` (in `source`) to `batch` in `target`, durably."""
    try:
        os.rename(name, batch, src_dir_fd=source.fd, dst_dir_fd=target.fd)
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
            raise FolderError(
                shown,
                f"{shown} is already there and is not this batch's; move it away and the "
                "batch is filed",
            ) from exc
        raise
    target.fsync()


def record_stem(state: BatchState) -> str:
    """The record a batch ends with: `receipt`, `held` or `error` (.json)."""
    return {BatchState.SENT: "receipt", BatchState.HELD: "held"}.get(state, "error")
