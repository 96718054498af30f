"""Kill -9 torture: files keep coming while `dropd run` is killed and restarted, over and over.

Mail servers prove their queues this way. After the last restart every dropped file must be
in `sent/` exactly once and have gone up at least once, nothing may be left behind, and a
batch may have gone up twice only when its receipt says it was resent after a restart.

A short run by default; a long one on demand, replayable from the seed it prints:

    DROPD_TORTURE_KILLS=200 DROPD_TORTURE_SEED=1234 pytest -s tests/e2e/test_torture.py
"""

from __future__ import annotations

import hashlib
import math
import os
import secrets
import threading
import time
import uuid
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
    toml_config,
    uploads_by_batch,
    wait_for,
    write_secret,
)

from daemon import crashpoints

GROUPS = ("music", "art", "drama")
KILLS = int(os.environ.get("DROPD_TORTURE_KILLS", "15"))
SEED = int(os.environ.get("DROPD_TORTURE_SEED") or secrets.randbelow(2**32))
MAX_KILL_DELAY = 1.5  # seconds after `daemon_starting`: recovery, intake, zip and upload
MARKED = 0.2  # the share of files that come with a legacy `NAME.done` marker
LARGEST = 2_000_000  # bytes; sizes are spread evenly on a log scale from a few bytes up
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


@dataclass(frozen=True, slots=True)
class Dropped:
    group: str
    name: str
    sha256: str

    @property
    def key(self) -> FileKey:
        return (self.group, self.name, self.sha256)


def csv_file(rng: Random, number: int) -> tuple[str, bytes]:
    """A valid CSV of a random kind and size (one row to ~2 MB), unique by a uuid."""
    kind = rng.choice(sorted(KINDS))
    header, row = KINDS[kind]
    uid = uuid.UUID(int=rng.getrandbits(128), version=4).hex
    size = math.exp(rng.uniform(0, math.log(LARGEST)))
    rows = max(1, int(size) // len(row))
    body = header + "".join(row.format(uid=uid, i=i) for i in range(rows))
    return f"{kind}-{number:05d}-{uid[:8]}.csv", body.encode()


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
        name, content = csv_file(self.rng, len(self.dropped))
        if self.rng.random() < MARKED:  # there first, so the file is ready the moment it lands
            drop(self.folders[group], name + ".done", b"")
            self.dropped.append(Dropped(group, name + ".done", hashlib.sha256(b"").hexdigest()))
        drop(self.folders[group], name, content)
        self.dropped.append(Dropped(group, name, hashlib.sha256(content).hexdigest()))

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
    failed: list[Path] = field(default_factory=list)
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
        found.failed += sorted(p for p in (folder / "failed").rglob("*") if p.is_file())
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
    """Each file once in sent/, at least once at the sandbox, twice only in a resent batch."""
    problems = [
        f"{d} is in sent/ {found.sent[d.key]} times" for d in dropped if found.sent[d.key] != 1
    ]
    problems += [
        f"{d} never reached the sandbox"
        for d in dropped
        if found.received[d.key] == 0 and not d.name.endswith(".done")
    ]
    problems += [f"{key}: a marker went up" for key in found.received if key[1].endswith(".done")]
    keys = {d.key for d in dropped}
    files = {(d.group, d.name): d.key for d in dropped}
    problems += [
        f"{d} is not in the sent/ folder of its file"
        for d in dropped
        if d.name.endswith(".done")
        and found.sent_in.get(d.key) != found.sent_in.get(files[(d.group, d.name[:-5])])
    ]
    problems += [f"{key} in sent/ was never dropped" for key in set(found.sent) - keys]
    problems += [f"{key} at the sandbox was never dropped" for key in set(found.received) - keys]
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

    last = start_daemon(config, tmp_path / "logs" / "last.log")
    processes.append(last)
    last.wait_event("daemon_ready")
    try:
        wait_for(lambda: all_drained(last, folders), "every group drained", DRAIN_DEADLINE)
    except AssertionError as exc:  # the figures below say what is left, and where
        print(f"torture: {exc}")
    assert last.stop() == 0, last.text()

    found = gather(folders, sandbox)
    all_receipts = [r for f in folders.values() for r in receipts(f)]
    missing = [d for d in dropped if found.sent[d.key] == 0]
    stranded = [d for d in missing if d.name in {p.name for p in found.left}]
    failed = [d for d in missing if d.name in {p.name for p in found.failed}]
    print(
        f"torture: {kills} kills, {sum(not d.name.endswith('.done') for d in dropped)} files "
        f"(+{sum(d.name.endswith('.done') for d in dropped)} markers), "
        f"{len(all_receipts)} batches, "
        f"{len(missing) - len(stranded) - len(failed)} lost, {len(stranded)} stranded, "
        f"{len(failed)} failed, {len(found.twice)} batches uploaded twice "
        f"({sum(1 for n in found.received.values() if n > 1)} files), "
        f"{time.monotonic() - started:.1f} s, seed {SEED}"
    )
    problems = [f"left behind: {p}" for p in found.left]
    problems += [f"in failed/: {p}" for p in found.failed]
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
    crashed = start_daemon(config, tmp_path / "crashed.log", {crashpoints.ENV: "claimed"})
    processes.append(crashed)
    crashed.wait_event("daemon_ready")
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
