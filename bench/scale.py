"""dropd at scale, run on demand: `python bench/scale.py [--quick] [--work-dir DIR]`
(also `--only native|poll`, `--idle-seconds N`, `--keep`).

One `dropd sandbox` and real `dropd run` processes on 1,000 generated group folders:

- idle: CPU and RSS of a daemon watching 1,000 groups with native events, then polling
  every 2 s;
- pickup: one file at a time into each of 10 groups, 500 files in all: how long after its
  windows (settle, then quiet) each file's batch closed, and drop to receipt;
- burst: 10,000 small CSVs renamed into one group at once: batches, peak open files, peak
  memory, and how long after the windows the last file was filed in sent/.

`run_all(work_dir, quick)` returns the rows; `main()` prints them as a Markdown table on
stdout (progress on stderr). See bench/README.md, "Scale".
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from procs import Daemon, Sandbox, stop, wait_until
from scale_procs import (
    LogTail,
    ResourceSampler,
    cpu_seconds,
    epoch,
    mib,
    open_fds,
    threads,
    write_many_groups,
)

GROUPS = 1000
SETTLE, QUIET = 0.25, 0.25
WINDOWS = SETTLE + QUIET
DAEMON = {"settle_seconds": SETTLE, "quiet_seconds": QUIET, "max_wait_seconds": 120.0}
POLL_SECONDS = 2.0
PICKUP_FILES, PICKUP_LANES = 500, 10
BURST_FILES = 10_000
BURST_GROWTH_MIB = 40  # "no memory blow-up": about 4 KiB a file at most, whatever came before
MB_IN_MIB = 1_000_000 / (1 << 20)
USERS_HEADER = "user_id,login_id,first_name,last_name,email,status\n"


@dataclass(frozen=True)
class Row:
    """One figure: what it is, its target, what was measured, and whether it met it
    (None: shown for context, no target)."""

    figure: str
    target: str
    measured: str
    met: bool | None = None


def progress(message: str) -> None:
    print(f"bench/scale: {message}", file=sys.stderr, flush=True)


def _users_csv(tag: str) -> str:
    return USERS_HEADER + f"{tag},{tag}@example.edu,Guest,{tag},{tag}@example.edu,active\n"


@dataclass
class Running:
    """A `dropd run` under test, its log read as it grows."""

    daemon: Daemon
    tail: LogTail
    start_seconds: float

    @property
    def pid(self) -> int:
        return self.daemon.process.pid


@contextlib.contextmanager
def running(
    root: Path, sandbox: Sandbox, folders: dict[str, Path], extra: dict[str, Any]
) -> Iterator[Running]:
    """Start `dropd run` on `folders`, wait for READY, stop it at the end."""
    root.mkdir()
    config = write_many_groups(root, sandbox, folders, {**DAEMON, **extra})
    daemon = Daemon.start(config, root / "dropd.log")
    try:
        daemon.wait_ready(deadline=600)
        times = daemon.event_times()
        yield Running(daemon, LogTail(daemon.log), times["daemon_ready"] - times["daemon_starting"])
    finally:
        stop(daemon.process)


# -- idle -------------------------------------------------------------------------------------


def idle(run: Running, seconds: float, label: str, cpu_target: float, rss: bool) -> list[Row]:
    """CPU (percent of one core) and RSS over `seconds` with nothing dropped."""
    time.sleep(2.0)  # past the first status write and metrics publish
    cpu0, t0 = cpu_seconds(run.pid), time.monotonic()
    time.sleep(seconds)
    cpu = (cpu_seconds(run.pid) - cpu0) / (time.monotonic() - t0) * 100
    rss_mib = mib(run.pid, "VmRSS")
    rows = [
        Row(
            f"Idle, {label}: CPU over {seconds:.0f} s (% of one core)",
            f"< {cpu_target:g}%",
            f"{cpu:.2f}%",
            cpu < cpu_target,
        ),
    ]
    if rss:
        rows.append(
            Row(
                f"Idle, {label}: RSS",
                "< 120 MB (114.4 MiB)",
                f"{rss_mib:.1f} MiB",
                rss_mib < 120 * MB_IN_MIB,
            )
        )
    rows.append(
        Row(
            f"Idle, {label}: start-up to READY; threads; open fds",
            "",
            f"{run.start_seconds:.1f} s; {threads(run.pid)}; {open_fds(run.pid)}",
        )
    )
    return rows


# -- pickup -----------------------------------------------------------------------------------


@dataclass
class Lane:
    """One group that gets one file at a time."""

    group: str
    folder: Path
    not_before: float
    file: str = ""
    dropped_at: float = 0.0
    mtime: float = 0.0
    batch: str = ""


@dataclass
class PickupResult:
    pickups: list[float] = field(default_factory=list)  # batch_closed - (mtime + S + Q)
    settles: list[float] = field(default_factory=list)  # file_claimed - (mtime + S)
    dropped: dict[tuple[str, str], float] = field(default_factory=dict)  # (group, batch) -> when
    receipts: list[float] = field(default_factory=list)  # batch_sent - drop


def _drop_one(lane: Lane, index: int) -> None:
    name = f"pick-{index:04d}.csv"
    temporary = lane.folder / f".{name}.part"
    temporary.write_text(_users_csv(f"p{index}"), encoding="utf-8")
    lane.dropped_at = time.time()
    os.rename(temporary, lane.folder / name)
    lane.file, lane.batch = name, ""
    lane.mtime = os.stat(lane.folder / name).st_mtime_ns / 1e9


def _pickup_event(event: dict[str, Any], lanes: dict[str, Lane], result: PickupResult) -> None:
    lane = lanes.get(str(event.get("group")))
    if lane is None or not lane.file:
        return
    if event["event"] == "file_claimed" and event.get("file") == lane.file:
        lane.batch = str(event["batch"])
        result.settles.append(epoch(event) - (lane.mtime + SETTLE))
    elif event["event"] == "batch_closed" and lane.batch and event.get("batch") == lane.batch:
        result.pickups.append(epoch(event) - (lane.mtime + WINDOWS))
        result.dropped[(lane.group, lane.batch)] = lane.dropped_at
        lane.file = ""


def pickup(run: Running, folders: dict[str, Path], count: int) -> PickupResult:
    """Drop `count` files, one at a time per lane, and time each to its batch's close."""
    keys = list(folders)[:PICKUP_LANES]
    start = time.monotonic()
    lanes = {k: Lane(k, folders[k], start + i * WINDOWS / len(keys)) for i, k in enumerate(keys)}
    result, dropped = PickupResult(), 0
    sent: dict[tuple[str, str], float] = {}
    run.tail.new_events()
    deadline = start + 60 + count * (WINDOWS + 1) / len(keys)
    while len(result.pickups) < count or len(sent) < count:
        now = time.monotonic()
        for lane in lanes.values():
            if not lane.file and dropped < count and now >= lane.not_before:
                _drop_one(lane, dropped)
                dropped += 1
        for event in run.tail.new_events():
            _pickup_event(event, lanes, result)
            if event["event"] == "batch_sent":
                sent[(str(event["group"]), str(event["batch"]))] = epoch(event)
        if now > deadline:
            raise TimeoutError(f"pickup: {len(result.pickups)} closed, {len(sent)} sent of {count}")
        time.sleep(0.003)
    result.receipts = [sent[key] - at for key, at in result.dropped.items() if key in sent]
    return result


def quantile(values: list[float], share: float) -> float:
    """The nearest-rank quantile of `values`."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def pickup_rows(result: PickupResult) -> list[Row]:
    n = len(result.pickups)
    median, p99 = quantile(result.pickups, 0.5) * 1000, quantile(result.pickups, 0.99) * 1000
    settle50 = quantile(result.settles, 0.5) * 1000
    drop50, drop99 = quantile(result.receipts, 0.5), quantile(result.receipts, 0.99)
    return [
        Row(
            f"Pickup: settle to batch closed, beyond the windows, median ({n} files)",
            "< 100 ms",
            f"{median:.0f} ms",
            median < 100,
        ),
        Row(f"Pickup: the same, p99 ({n} files)", "< 500 ms", f"{p99:.0f} ms", p99 < 500),
        Row("Pickup: of which settle to claim, median", "", f"{settle50:.0f} ms"),
        Row(
            f"Pickup: drop to receipt, median / p99 (windows {WINDOWS:g} s included)",
            "",
            f"{drop50:.2f} s / {drop99:.2f} s",
        ),
    ]


# -- burst ------------------------------------------------------------------------------------


@dataclass
class BurstResult:
    drop_seconds: float
    filed_after_windows: float
    batches: int
    parts: int
    files_in_sent: int
    peak_fds: int
    idle_fds: int
    hwm_before: float
    hwm_after: float
    peak_rss: float
    steps: dict[str, float]  # event -> seconds after the last drop


def _stage(staging: Path, count: int) -> list[str]:
    staging.mkdir()
    names = [f"burst-{i:05d}.csv" for i in range(count)]
    for i, name in enumerate(names):
        (staging / name).write_text(_users_csv(f"b{i}"), encoding="utf-8")
    return names


def _files_in_sent(folder: Path) -> int:
    return sum(
        len([n for n in os.listdir(batch) if n != "receipt.json"])
        for batch in (folder / "sent").glob("*/*")
        if batch.is_dir()
    )


def burst(run: Running, work: Path, folder: Path, group: str, count: int) -> BurstResult:
    """Rename `count` small CSVs into `folder` at once; wait until every one is in sent/."""
    names = _stage(work / "burst-staging", count)
    idle_fds, hwm_before = open_fds(run.pid), mib(run.pid, "VmHWM")
    run.tail.new_events()
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    filed = batches = parts = 0
    with ResourceSampler(run.pid) as sampler:
        started = time.time()
        for name in names:
            os.rename(work / "burst-staging" / name, folder / name)
        dropped = time.time()

        def all_filed() -> bool:
            nonlocal filed, batches, parts
            for event in run.tail.new_events():
                if event.get("group") != group:
                    continue
                name, at = str(event["event"]), epoch(event)
                first.setdefault(name, at)
                last[name] = at
                if name == "batch_failed":
                    raise RuntimeError(f"burst: a batch failed: {event}")
                batches += name == "batch_closed"
                parts += int(event.get("parts", 0)) if name == "batch_zipped" else 0
                filed += int(event.get("files", 0)) if name == "batch_sent" else 0
            return filed >= count

        wait_until(all_filed, f"{count} files in sent/", 300 + count / 100)
    steps = {f"first {k}": v - dropped for k, v in first.items()}
    steps |= {f"last {k}": v - dropped for k, v in last.items()}
    return BurstResult(
        dropped - started,
        last["batch_sent"] - dropped - WINDOWS,
        batches,
        parts,
        _files_in_sent(folder),
        sampler.peak_fds,
        idle_fds,
        hwm_before,
        mib(run.pid, "VmHWM"),
        sampler.peak_rss_mib,
        steps,
    )


def burst_rows(result: BurstResult, count: int) -> list[Row]:
    fds_grew = result.peak_fds - result.idle_fds
    shown = (
        "first file_claimed",
        "last file_claimed",
        "last batch_closed",
        "last batch_zipped",
        "last upload_answered",
        "last batch_sent",
    )
    timeline = ", ".join(
        f"{k.split(' ', 1)[1]} {result.steps[k]:.1f}" for k in shown if k in result.steps
    )
    return [
        Row(
            f"Burst of {count:,}: filed in sent/, after the windows",
            "<= 30 s",
            f"{result.filed_after_windows:.1f} s",
            result.filed_after_windows <= 30,
        ),
        Row(
            "Burst: batches (ZIP parts); files found in sent/",
            f"1 batch; {count:,}",
            f"{result.batches} ({result.parts}); {result.files_in_sent:,}",
            result.batches == 1 and result.files_in_sent == count,
        ),
        Row(
            "Burst: peak open fds (sampled every 50 ms) vs before",
            "flat (< +100)",
            f"{result.peak_fds} vs {result.idle_fds}",
            fds_grew < 100,
        ),
        Row(
            "Burst: VmHWM before -> after the burst (peak RSS sampled)",
            f"flat (< +{BURST_GROWTH_MIB} MiB)",
            f"{result.hwm_before:.1f} -> {result.hwm_after:.1f} MiB ({result.peak_rss:.1f})",
            result.hwm_after - result.hwm_before < BURST_GROWTH_MIB,
        ),
        Row(
            f"Burst: timeline, s after the last rename (renames took {result.drop_seconds:.2f} s)",
            "",
            timeline,
        ),
    ]


# -- the whole run ----------------------------------------------------------------------------


def make_folders(root: Path, count: int) -> dict[str, Path]:
    folders = {f"g{i:04d}": root / f"g{i:04d}" for i in range(count)}
    for folder in folders.values():
        folder.mkdir(parents=True)
    return folders


def run_all(
    work_dir: Path,
    quick: bool,
    *,
    only: str = "",
    keep: bool = False,
    idle_seconds: float | None = None,
) -> list[Row]:
    """Every scale figure, in a temporary folder under `work_dir` removed at the end unless
    `keep` (`only="native"` or `"poll"`: that daemon's figures alone; `idle_seconds`: both
    idle windows, instead of 62 s and 30 s with `quick`, 125 s and 60 s without: the
    native window holds one or two of the once-a-minute rescans of every folder)."""
    native_idle, poll_idle = (62.0, 30.0) if quick else (125.0, 60.0)
    if idle_seconds is not None:
        native_idle = poll_idle = idle_seconds
    work = Path(tempfile.mkdtemp(prefix="dropd-scale-", dir=work_dir))
    sandbox = Sandbox.start(
        work / "store", work / "sandbox.log", "bench", secrets.token_urlsafe(16)
    )
    rows: list[Row] = []
    try:
        folders = make_folders(work / "groups", GROUPS)
        if only != "poll":
            rows += _native(work, sandbox, folders, native_idle)
        if only != "native":
            rows += _poll(work, sandbox, folders, poll_idle)
    finally:
        sandbox.stop()
        if keep:
            progress(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return rows


def _native(work: Path, sandbox: Sandbox, folders: dict[str, Path], window: float) -> list[Row]:
    """Idle, pickup and burst in one daemon watching every group with inotify."""
    rows: list[Row] = []
    progress(f"{GROUPS} groups, native events: starting")
    with running(work / "native", sandbox, folders, {}) as run:
        progress(f"idle for {window:.0f} s")
        rows += idle(run, window, f"{GROUPS} groups, native events", 1.0, rss=True)
        progress(f"pickup: {PICKUP_FILES} files over {PICKUP_LANES} groups")
        rows += pickup_rows(pickup(run, folders, PICKUP_FILES))
        key = list(folders)[-1]
        progress(f"burst: {BURST_FILES:,} files into {key}")
        rows += burst_rows(burst(run, work, folders[key], key, BURST_FILES), BURST_FILES)
    return rows


def _poll(work: Path, sandbox: Sandbox, folders: dict[str, Path], window: float) -> list[Row]:
    """Idle in one daemon polling every group."""
    progress(f"{GROUPS} groups, poll_seconds = {POLL_SECONDS:g}: starting")
    with running(work / "poll", sandbox, folders, {"poll_seconds": POLL_SECONDS}) as run:
        progress(f"idle for {window:.0f} s")
        label = f"{GROUPS} groups, poll_seconds = {POLL_SECONDS:g}"
        return idle(run, window, label, 5.0, rss=False)


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    kib = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    return (
        f"{cpu}, {os.cpu_count()} cores, {kib / (1 << 20):.1f} GiB RAM, "
        f"Python {platform.python_version()}, load {os.getloadavg()[0]:.2f} at the start"
    )


def render(rows: list[Row]) -> str:
    """The rows as a Markdown table."""
    met = {True: "yes", False: "**no**", None: ""}
    lines = ["| figure | target | measured | met? |", "|---|---|---|---|"]
    lines += [f"| {r.figure} | {r.target} | {r.measured} | {met[r.met]} |" for r in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/scale.py", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter idle windows")
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--only", choices=("native", "poll"), default="", help="one daemon")
    parser.add_argument("--keep", action="store_true", help="keep the folders and logs")
    parser.add_argument("--idle-seconds", type=float, help="both idle windows, in seconds")
    args = parser.parse_args(argv)
    described, started = machine(), time.monotonic()
    rows = run_all(
        args.work_dir, args.quick, only=args.only, keep=args.keep, idle_seconds=args.idle_seconds
    )
    print(f"Machine: {described}; load {os.getloadavg()[0]:.2f} at the end.\n")
    print(render(rows), end="")
    progress(f"done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
