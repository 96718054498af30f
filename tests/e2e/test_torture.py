"""Kill -9 torture: files keep coming while `dropd run` is killed and restarted, over and over.

Mail servers prove their queues this way. Files of every kind come: CSVs (some with a
legacy `.done` marker, written after the file as a careful writer does, or before it, when
it no longer counts), ready-made ZIPs, and now and then a `report-N.pdf` dropd does not
upload. After the last restart every CSV and ZIP must be in `sent/` exactly once and have
gone up at least once (a ZIP as it came, byte for byte), every marker beside its file, every
pdf alone in `failed/BATCH/` at step `intake` and never at the sandbox; nothing else may be
in `failed/` or left behind, and a batch may have gone up twice only when its receipt says
it was resent after a restart.

A short run by default; a long one on demand, replayable from the seed it prints:

    DROPD_TORTURE_KILLS=200 DROPD_TORTURE_SEED=1234 pytest -s tests/e2e/test_torture.py
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import secrets
import threading
import time
import uuid
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from random import Random

from harness import (
    DaemonProcess,
    SandboxProcess,
    drained,
    drop,
    read,
    receipts,
    sandbox_environment,
    start_daemon,
    start_ready,
    toml_config,
    uploads_by_batch,
    wait_for,
    write_secret,
)

from daemon.base import crashpoints

GROUPS = ("music", "art", "drama")
KILLS = int(os.environ.get("DROPD_TORTURE_KILLS", "15"))
SEED = int(os.environ.get("DROPD_TORTURE_SEED") or secrets.randbelow(2**32))
MAX_KILL_DELAY = 1.5  # seconds after `daemon_starting`: recovery, intake, zip and upload
# The share of drops that are a `report-N.pdf` (fails alone at intake, never goes up), and
# a ready-made `export-N.zip` holding one CSV (its own batch, goes up as it came).
PDFS = 0.05
ZIPS = 0.07
# The share of CSVs with a legacy `NAME.done` marker written after the file (it counts: the
# file is ready at once), and before it (it does not: settle time; it travels all the same).
MARKED_AFTER = 0.2
MARKED_BEFORE = 0.05
LARGEST = 2_000_000  # bytes; sizes are spread evenly on a log scale from a few bytes up
LARGEST_IN_ZIP = 200_000  # the CSV inside a dropped ZIP
DRAIN_DEADLINE = 300.0  # the last run sends everything the kills left behind
# Each kind: the header the server knows, and a row that makes every file's bytes unique.
KINDS = {
    "users": (
        "user_id,login_id,first_name,last_name,email,status\n",
        "{uid}-{i},{uid}-{i}@example.edu,Guest,{i},{uid}-{i}@example.edu,active\n",
    ),
    "listings": ("user_id,listing_id\n", "{uid}-{i},listing-{i}\n"),
}
FileKey = tuple[str, str, str]  # group, name, sha256


CSV, MARKER, EARLY_MARKER, PDF, ZIP = "csv", "marker", "early marker", "pdf", "zip"


@dataclass(frozen=True, slots=True)
class Dropped:
    group: str
    name: str
    sha256: str
    kind: str = CSV  # CSV, MARKER (written after its file), EARLY_MARKER (before), PDF, ZIP
    inner: tuple[str, str] | None = None  # a ZIP's one entry: its name and sha256

    @property
    def key(self) -> FileKey:
        return (self.group, self.name, self.sha256)


def csv_file(rng: Random, number: int, largest: int = LARGEST) -> tuple[str, bytes]:
    """A valid CSV of a random kind and size (one row to `largest`), unique by a uuid."""
    kind = rng.choice(sorted(KINDS))
    header, row = KINDS[kind]
    uid = uuid.UUID(int=rng.getrandbits(128), version=4).hex
    size = math.exp(rng.uniform(0, math.log(largest)))
    rows = max(1, int(size) // len(row))
    body = header + "".join(row.format(uid=uid, i=i) for i in range(rows))
    return f"{kind}-{number:05d}-{uid[:8]}.csv", body.encode()


def pdf_file(rng: Random, number: int) -> tuple[str, bytes]:
    """A file dropd does not upload, unique by a uuid."""
    uid = uuid.UUID(int=rng.getrandbits(128), version=4).hex
    return f"report-{number:05d}.pdf", f"%PDF-1.4\n% {uid}\n%%EOF\n".encode()


def zip_file(rng: Random, number: int) -> tuple[str, bytes, tuple[str, str]]:
    """A ready-made ZIP holding one unique valid CSV; also the entry's name and sha256."""
    name, content = csv_file(rng, number, LARGEST_IN_ZIP)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0)), content)
    entry = (name, hashlib.sha256(content).hexdigest())
    return f"export-{number:05d}.zip", buffer.getvalue(), entry


@dataclass(eq=False)
class DropWriter(threading.Thread):
    """Drops files the careful way (`.NAME.part`, then a rename) until told to stop."""

    folders: dict[str, Path]
    rng: Random
    dropped: list[Dropped] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    failure: BaseException | None = None

    def __post_init__(self) -> None:
        super().__init__(name="drop-writer", daemon=True)

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                # Now and then a burst, so batches of several files form too.
                group = self.rng.choice(GROUPS)
                for _ in range(self.rng.choice((1, 1, 1, 2, 5))):
                    self._drop_one(group)
                self.stopping.wait(self.rng.uniform(0, 0.25))
        except BaseException as exc:  # reported by the test's thread
            self.failure = exc

    def _drop_one(self, group: str) -> None:
        number, draw = len(self.dropped), self.rng.random()
        if draw < PDFS:
            self._drop(group, *pdf_file(self.rng, number), PDF)
            return
        if draw < PDFS + ZIPS:
            name, content, entry = zip_file(self.rng, number)
            self._drop(group, name, content, ZIP, entry)
            return
        name, content = csv_file(self.rng, number)
        marked = self.rng.random()
        if marked < MARKED_BEFORE:  # before its file: it no longer counts, it travels along
            self._drop(group, name + ".done", b"", EARLY_MARKER)
        self._drop(group, name, content, CSV)
        if MARKED_BEFORE <= marked < MARKED_BEFORE + MARKED_AFTER:  # after: ready at once
            self._drop(group, name + ".done", b"", MARKER)

    def _drop(
        self, group: str, name: str, content: bytes, kind: str, inner: tuple[str, str] | None = None
    ) -> None:
        drop(self.folders[group], name, content)
        sha = hashlib.sha256(content).hexdigest()
        self.dropped.append(Dropped(group, name, sha, kind, inner))

    def finish(self) -> list[Dropped]:
        """Stop dropping; the files dropped, in order. Fails if the writer failed."""
        self.stopping.set()
        self.join(timeout=60)
        assert not self.is_alive(), "the writer thread did not stop"
        assert self.failure is None, f"the writer failed: {self.failure!r}"
        return list(self.dropped)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def setup_groups(tmp_path: Path, sandbox: SandboxProcess) -> tuple[Path, dict[str, Path]]:
    """Three groups on one environment (one client), with fast windows."""
    folders = {group: tmp_path / "drop" / group for group in GROUPS}
    for folder in folders.values():
        folder.mkdir(parents=True)
    secret = write_secret(tmp_path / "test.secret", "secret-a-1234")
    config = toml_config(
        tmp_path,
        {"test": sandbox_environment(sandbox, "unit-a", secret)},
        {group: {"environment": "test", "folder": str(f)} for group, f in folders.items()},
        settle_seconds=0.2,
        quiet_seconds=0.3,
        max_wait_seconds=2,
        retry_initial_seconds=0.2,
        retry_max_seconds=2,
    )
    return config, folders


def kill_cycles(
    config: Path, logs: Path, rng: Random, processes: list[SandboxProcess | DaemonProcess]
) -> int:
    """Start dropd and SIGKILL it at a random moment, `KILLS` times; returns the kills."""
    logs.mkdir()
    for cycle in range(KILLS):
        daemon = start_daemon(config, logs / f"run-{cycle:04d}.log")
        processes.append(daemon)
        daemon.wait_event("daemon_starting")
        time.sleep(rng.uniform(0, MAX_KILL_DELAY))  # picks the moment; asserts nothing
        assert daemon.process.poll() is None, f"dropd exited by itself:\n{daemon.text()}"
        daemon.process.kill()
        daemon.process.wait(timeout=30)
    return KILLS


@dataclass
class Findings:
    """Where each dropped file's bytes ended up, gathered once the last run is over."""

    sent: Counter[FileKey] = field(default_factory=Counter)
    sent_in: dict[FileKey, Path] = field(default_factory=dict)  # the sent/ batch folder
    failed: Counter[FileKey] = field(default_factory=Counter)  # records aside
    failed_batches: list[tuple[str, Path]] = field(default_factory=list)  # group, folder
    failed_strays: list[Path] = field(default_factory=list)  # in failed/, not in a batch
    left: list[Path] = field(default_factory=list)  # at the top level or in .dropd/work/
    received: Counter[FileKey] = field(default_factory=Counter)
    received_in: dict[FileKey, set[str]] = field(default_factory=dict)  # batch ids
    uploads: dict[tuple[str, str], list[Path]] = field(default_factory=dict)  # group, batch
    twice: set[tuple[str, str]] = field(default_factory=set)  # a ZIP of theirs went up again


def gather(folders: dict[str, Path], sandbox: SandboxProcess) -> Findings:
    found = Findings()
    for group, folder in folders.items():
        for batch_dir in sorted((folder / "sent").glob("*/*/")):
            for path in batch_dir.iterdir():
                if path.name != "receipt.json":
                    key = (group, path.name, sha256_of(path))
                    found.sent[key] += 1
                    found.sent_in[key] = batch_dir
        for path in sorted((folder / "failed").rglob("*")):
            if path.is_dir() and path.parent == folder / "failed":
                found.failed_batches.append((group, path))
            elif path.is_file() and path.parent.parent != folder / "failed":
                found.failed_strays.append(path)
            elif path.is_file() and path.name != "error.json":
                key = (group, path.name, sha256_of(path))
                found.failed[key] += 1
        found.left += [p for p in folder.iterdir() if not p.is_dir()]
        found.left += sorted(p for p in (folder / ".dropd" / "work").rglob("*") if p.is_file())
    zips: Counter[tuple[str, str, str]] = Counter()
    for batch, uploads in uploads_by_batch(sandbox).items():
        for upload in uploads:
            request = sandbox.request(upload)
            found.uploads.setdefault((request["group"], batch), []).append(upload)
            zips[(request["group"], batch, request["parts"][0]["filename"])] += 1
            for entry in request["files"]:
                key = (request["group"], entry["name"], sha256_of(upload / entry["stored_as"]))
                found.received[key] += 1
                found.received_in.setdefault(key, set()).add(batch)
    found.twice = {(group, batch) for (group, batch, _), count in zips.items() if count > 1}
    return found


def all_drained(daemon: DaemonProcess, folders: dict[str, Path]) -> bool:
    assert daemon.process.poll() is None, f"dropd exited:\n{daemon.text()}"
    return all(drained(folder) for folder in folders.values())


def receipt_problems(receipt: Path) -> list[str]:
    """What is wrong with a receipt: it must list exactly the files beside it, say 200."""
    record = read(receipt)
    beside = {p.name for p in receipt.parent.iterdir() if not p.name.endswith(".done")}
    listed = {f["name"]: f for f in record["files"] if not f["name"].endswith(".done")}
    problems = []
    if set(listed) != beside - {"receipt.json"}:
        problems.append(f"{receipt}: lists {sorted(listed)}, beside it {sorted(beside)}")
    for name, entry in listed.items():
        path = receipt.parent / name
        if path.is_file() and (entry["bytes"], entry["sha256"]) != (
            path.stat().st_size,
            sha256_of(path),
        ):
            problems.append(f"{receipt}: {name} is not the file it lists")
    if (
        record["batch"] != receipt.parent.name
        or receipt.parent.parent.name != record["finished"][:10]
    ):
        problems.append(f"{receipt}: filed under the wrong batch or day")
    if any((p["sent"], p["status"]) != (True, 200) for p in record["parts"]):
        problems.append(f"{receipt}: parts {record['parts']}")
    if record["status"] != 200:
        problems.append(f"{receipt}: the server's status is {record['status']!r}, not 200")
    return problems


def upload_problems(receipt: Path, found: Findings) -> list[str]:
    """A receipt's batch went up, as the ZIP(s) it names; twice only if the receipt says so."""
    record = read(receipt)
    batch = (receipt.parents[3].name, record["batch"])
    uploads = found.uploads.get(batch, [])
    if not uploads:
        return [f"{receipt}: its batch never reached the sandbox"]
    zips = {sha256_of(u / "upload.zip") for u in uploads}
    problems = [
        f"{receipt}: part {p['number']} is not a ZIP that went up"
        for p in record["parts"]
        if p["sha256"] not in zips
    ]
    if batch in found.twice and record["resent_after_restart"] is not True:
        problems.append(f"{receipt}: went up {len(uploads)} times, the receipt does not say so")
    return problems


def file_problems(dropped: list[Dropped], found: Findings) -> list[str]:
    """Each CSV, ZIP and marker once in sent/, each pdf once in failed/ and nowhere else; each
    CSV at least once at the sandbox, each ZIP's entry in its batch's upload, no pdf and no
    marker; twice only in a resent batch."""
    problems = [
        f"{d} is in sent/ {found.sent[d.key]} times"
        for d in dropped
        if found.sent[d.key] != (0 if d.kind == PDF else 1)
    ]
    problems += [
        f"{d} is in failed/ {found.failed[d.key]} times"
        for d in dropped
        if found.failed[d.key] != (1 if d.kind == PDF else 0)
    ]
    problems += [
        f"{d} never reached the sandbox"
        for d in dropped
        if d.kind == CSV and found.received[d.key] == 0
    ]
    problems += [f"{d} went up" for d in dropped if d.kind == PDF and found.received[d.key]]
    problems += [f"{key}: a marker went up" for key in found.received if key[1].endswith(".done")]
    keys = {d.key for d in dropped}
    inner = {(d.group, *d.inner) for d in dropped if d.inner is not None}
    files = {(d.group, d.name): d.key for d in dropped}
    problems += [
        f"{d} is not in the sent/ folder of its file"
        for d in dropped
        if d.kind in (MARKER, EARLY_MARKER)
        and found.sent_in.get(d.key) != found.sent_in.get(files[(d.group, d.name[:-5])])
    ]
    problems += [f"{key} in sent/ was never dropped" for key in set(found.sent) - keys]
    problems += [f"{key} in failed/ was never dropped" for key in set(found.failed) - keys]
    problems += [
        f"{key} at the sandbox was never dropped" for key in set(found.received) - keys - inner
    ]
    problems += zip_problems([d for d in dropped if d.kind == ZIP], found)
    for key, count in found.received.items():
        home = found.sent_in.get(key)
        if count > 1 and home is not None:
            record = read(home / "receipt.json")
            if found.received_in[key] != {home.name} or record["resent_after_restart"] is not True:
                problems.append(
                    f"{key} went up {count} times in {sorted(found.received_in[key])}, "
                    f"filed in {home} whose receipt says resent={record['resent_after_restart']}"
                )
    return problems


def zip_problems(zips: list[Dropped], found: Findings) -> list[str]:
    """Each dropped ZIP's entry went up, zipped again by dropd, in the ZIP's own batch (the one
    that filed the ZIP as it came in sent/), more than once only if that batch's receipt says
    it was resent."""
    problems = []
    for d in zips:
        assert d.inner is not None
        entry, home = (d.group, *d.inner), found.sent_in.get(d.key)
        count, batches = found.received[entry], found.received_in.get(entry, set())
        if count == 0:
            problems.append(f"{d}: its entry {d.inner[0]} never reached the sandbox")
        elif home is not None and batches != {home.name}:
            problems.append(f"{d}: its entry went up in {sorted(batches)}, it is filed in {home}")
        elif (
            home is not None
            and count > 1
            and read(home / "receipt.json")["resent_after_restart"] is not True
        ):
            problems.append(f"{d}: its entry went up {count} times, its receipt does not say so")
        if home is not None and sorted(p.name for p in home.iterdir()) != sorted(
            [d.name, "receipt.json"]
        ):
            problems.append(f"{d}: its sent/ folder {home} holds more than it and its receipt")
    return problems


def failed_problems(dropped: list[Dropped], found: Findings) -> list[str]:
    """failed/ holds the pdfs and nothing else: each alone in its batch folder, beside an
    error.json that says step `intake` and names it."""
    pdfs = {(d.group, d.name) for d in dropped if d.kind == PDF}
    problems = [f"in failed/: {p}" for p in found.failed_strays]
    for group, batch in found.failed_batches:
        names = sorted(p.name for p in batch.iterdir())
        ours = [n for n in names if n != "error.json"]
        if len(ours) != 1 or (group, ours[0]) not in pdfs or "error.json" not in names:
            problems.append(f"in failed/: {batch} holds {names}")
            continue
        error = read(batch / "error.json")
        if error.get("step") != "intake" or ours[0] not in str(error.get("reason")):
            problems.append(
                f"in failed/: {batch}: step {error.get('step')!r}, reason {error.get('reason')!r}"
            )
    return problems


def test_torture_kill_9_loses_nothing_and_sends_twice_only_when_the_receipt_says_so(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    print(f"\ntorture: seed {SEED}, {KILLS} kills (DROPD_TORTURE_SEED={SEED} replays it)")
    started = time.monotonic()
    config, folders = setup_groups(tmp_path, sandbox)
    writer = DropWriter(folders, Random(f"{SEED}-writer"))
    writer.start()
    try:
        kills = kill_cycles(config, tmp_path / "logs", Random(f"{SEED}-kills"), processes)
    finally:
        dropped = writer.finish()

    last = start_ready(processes, config, tmp_path / "logs" / "last.log")
    try:
        wait_for(lambda: all_drained(last, folders), "every group drained", DRAIN_DEADLINE)
    except AssertionError as exc:  # the figures below say what is left, and where
        print(f"torture: {exc}")
    assert last.stop() == 0, last.text()

    found = gather(folders, sandbox)
    all_receipts = [r for f in folders.values() for r in receipts(f)]
    left = {p.name for p in found.left}
    missing = [d for d in dropped if (found.failed if d.kind == PDF else found.sent)[d.key] == 0]
    stranded = [d for d in missing if d.name in left]
    misfiled = [d for d in missing if found.sent[d.key] or found.failed[d.key]]
    kinds = Counter(d.kind for d in dropped)
    print(
        f"torture: {kills} kills, {kinds[CSV] + kinds[ZIP] + kinds[PDF]} files "
        f"({kinds[CSV]} csv, {kinds[ZIP]} zip, {kinds[PDF]} pdf; +{kinds[MARKER]} markers "
        f"after their file, +{kinds[EARLY_MARKER]} before), "
        f"{len(all_receipts)} batches sent, {len(found.failed_batches)} failed, "
        f"{len(missing) - len(stranded) - len(misfiled)} lost, {len(stranded)} stranded, "
        f"{len(misfiled)} misfiled, {len(found.twice)} batches uploaded twice "
        f"({sum(1 for n in found.received.values() if n > 1)} files), "
        f"{time.monotonic() - started:.1f} s, seed {SEED}"
    )
    problems = [f"left behind: {p}" for p in found.left]
    problems += failed_problems(dropped, found)
    problems += file_problems(dropped, found)
    for receipt in all_receipts:
        problems += receipt_problems(receipt) + upload_problems(receipt, found)
    filed = {(f.parents[3].name, f.parent.name) for f in all_receipts}
    problems += [f"batch {b} went up, was never filed" for b in set(found.uploads) - filed]
    print(f"torture: {len(problems)} problems", *problems[:50], sep="\n  ")
    assert dropped, "the writer dropped nothing"
    assert not problems, f"{len(problems)} problems (seed {SEED}), the first: {problems[:10]}"


def test_torture_kill_between_a_files_rename_and_its_markers_strands_no_marker(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    # The one window the random kills all but never hit: `claim` renames the file, then its
    # marker. A crash point after both, and the marker put back, is the state between them.
    config, folders = setup_groups(tmp_path, sandbox)
    folder = folders[GROUPS[0]]
    crashed = start_ready(processes, config, tmp_path / "crashed.log", {crashpoints.ENV: "claimed"})
    name, content = csv_file(Random(SEED), 1)
    drop(folder, name + ".done", b"")
    drop(folder, name, content)
    assert crashed.process.wait(timeout=60) == -9, crashed.text()
    [claimed] = (folder / ".dropd" / "work").glob(f"*/files/{name}.done")
    os.rename(claimed, folder / claimed.name)

    daemon = start_daemon(config, tmp_path / "restarted.log", {crashpoints.ENV: ""})
    processes.append(daemon)
    [receipt] = wait_for(lambda: receipts(folder), "the batch's receipt")
    wait_for(lambda: drained(folder), f"{name}.done to leave the top level with its file")
    assert sorted(p.name for p in receipt.parent.iterdir()) == sorted(
        ["receipt.json", name, name + ".done"]
    )
    assert (receipt.parent / name).read_bytes() == content
