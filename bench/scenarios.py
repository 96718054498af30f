"""The measurements: dropd from drop to receipt, a sysadmin's zip + curl, compression alone."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from procs import (
    KIB,
    Daemon,
    Finished,
    Sampler,
    Sandbox,
    proc_field,
    run_measured,
    stop,
    wait_until,
    write_config,
)
from speeds import Validated
from upload_speed import UploadSpeed

GROUP = "bench"
WINDOWS = {"settle_seconds": 0.5, "quiet_seconds": 0.5}
WINDOW_SECONDS = sum(WINDOWS.values())
DAEMON_SETTINGS = {**WINDOWS, "max_wait_seconds": 10, "read_timeout_seconds": 900}
SANDBOX_STEP = "sandbox: parse, unzip, check, store"
WORKER = Path(__file__).with_name("compress_worker.py")
# dropd's steps, each from one log event (or moment) to the next.
DROPD_STEPS = (
    ("settle: seen complete, claimed", "drop", "file_claimed"),
    ("quiet window, batch closed", "file_claimed", "batch_closed"),
    ("ZIP written (deflate + SHA-256)", "batch_closed", "batch_zipped"),
    ("token", "batch_zipped", "upload_started"),
    ("send: ZIP read and sent", "upload_started", "zip_read"),
    (SANDBOX_STEP, "zip_read", "upload_answered"),
    ("filed: receipt, moved to sent/", "upload_answered", "batch_sent"),
)
# Compression alone: (worker engine, levels, label, module to find first or None).
ENGINES = (
    ("zipfile", (6, 1), "stdlib zipfile", None),
    ("isal.isal_zlib", (0, 1, 2, 3), "python-isal (raw deflate)", "isal"),
    ("zlib_ng.zlib_ng", (1, 2, 6), "zlib-ng (raw deflate)", "zlib_ng"),
    ("dropd", (None,), "dropd's build_zip", None),
)


@dataclass(frozen=True)
class Step:
    """One step of an upload: its seconds, and the sender's peak RSS (MiB) during it."""

    name: str
    seconds: float | None
    peak_mib: float | None = None


@dataclass(frozen=True)
class Upload:
    """One way from a CSV to the sandbox's answer, timed whole and by step."""

    how: str
    seconds: float
    zip_bytes: int
    status: int | None
    steps: list[Step]
    peak_mib: float | None

    def without_sandbox(self, seconds: float | None) -> float | None:
        """`seconds` less the sandbox's own work on the upload, where both are known."""
        sandbox = next((s.seconds for s in self.steps if s.name == SANDBOX_STEP), None)
        return seconds - sandbox if seconds is not None and sandbox is not None else None


@dataclass(frozen=True)
class DropdRun:
    """dropd's upload, plus: drop to the 200 with the windows taken off, RSS idle, sandbox."""

    upload: Upload
    to_answer: float | None
    idle_mib: float | None
    sandbox_peak_mib: float | None


@dataclass(frozen=True)
class Compression:
    """One compressor on the whole file, as its own process."""

    engine: str
    level: int | None
    seconds: float | None = None
    out_bytes: int | None = None
    peak_mib: float | None = None
    note: str = ""


def _mib(kib: int | None) -> float | None:
    return kib / KIB if kib is not None else None


def _drop(source: Path, folder: Path) -> float:
    """Drop `source` as a careful writer does (a temporary name, then a rename); when."""
    temporary = folder / f".{source.name}.part"
    os.link(source, temporary)  # the same bytes, without a second GB on disk
    moment = time.time()
    os.rename(temporary, folder / source.name)
    return moment


def _receipt(folder: Path) -> Path | None:
    found = sorted((folder / "sent").glob("*/*/receipt.json"))
    return found[0] if found else None


def _receipt_seen(folder: Path, daemon: Daemon) -> bool:
    """True once the receipt is there; raises RuntimeError if dropd failed or ended."""
    if daemon.process.poll() is not None:
        raise RuntimeError(f"dropd run exited with {daemon.process.returncode}; see {daemon.log}")
    if failed := sorted((folder / "failed").glob("*/error.json")):
        raise RuntimeError(f"the batch failed: {failed[0].read_text(encoding='utf-8')}")
    return _receipt(folder) is not None


def dropd_upload(work: Path, source: Path, sandbox: Sandbox, deadline: float) -> DropdRun:
    """Drop `source` in a `dropd run`'s folder and time it to its receipt."""
    root, folder = work / "dropd", work / "dropd" / "drop"
    folder.mkdir(parents=True)
    config = write_config(root, sandbox, folder, GROUP, DAEMON_SETTINGS)
    daemon = Daemon.start(config, root / "dropd.log")
    pid = daemon.process.pid
    try:
        daemon.wait_ready()
        time.sleep(0.5)  # past its start-up, to read its idle RSS
        idle = _mib(proc_field(pid, "VmRSS"))
        with Sampler({"dropd": pid}) as sampler:
            dropped = _drop(source, folder)
            wait_until(lambda: _receipt_seen(folder, daemon), "the receipt", deadline)
            moments = {"drop": dropped, "receipt": time.time()}
            peak = _mib(proc_field(pid, "VmHWM"))
        sandbox_peak = _mib(proc_field(sandbox.process.pid, "VmHWM"))
    finally:
        stop(daemon.process)
    found = _receipt(folder)
    assert found is not None
    receipt = json.loads(found.read_text(encoding="utf-8"))
    return _dropd_result(daemon, sampler, moments, receipt, (idle, peak, sandbox_peak))


def _dropd_result(
    daemon: Daemon,
    sampler: Sampler,
    moments: dict[str, float],
    receipt: dict[str, Any],
    memory: tuple[float | None, float | None, float | None],
) -> DropdRun:
    zip_bytes = int(receipt["zip"]["bytes"])
    times = {**daemon.event_times(), **moments}
    if "upload_started" in times:
        times["zip_read"] = sampler.read_done("dropd", times["upload_started"], zip_bytes) or 0.0
    steps = [_step(name, times, start, end, sampler, "dropd") for name, start, end in DROPD_STEPS]
    answered = times.get("upload_answered")
    to_answer = answered - times["drop"] - WINDOW_SECONDS if answered else None
    status = receipt.get("status")
    upload = Upload(
        "dropd run",
        times["receipt"] - times["drop"],
        zip_bytes,
        status if isinstance(status, int) else None,
        steps,
        memory[1],
    )
    return DropdRun(upload, to_answer, memory[0], memory[2])


def _step(
    name: str, times: dict[str, float], start: str, end: str, sampler: Sampler, who: str
) -> Step:
    begin, finish = times.get(start), times.get(end)
    if not begin or not finish:
        return Step(name, None)
    return Step(name, finish - begin, sampler.peak_mib(who, begin, finish))


def missing_tools() -> list[str]:
    """The commands the sysadmin's script needs that are not installed."""
    return [tool for tool in ("zip", "curl") if shutil.which(tool) is None]


def sysadmin_upload(work: Path, source: Path, sandbox: Sandbox) -> Upload:
    """`zip -6`, a token with `curl -u`, then `curl -F` to the same sandbox: timed whole.

    Raises RuntimeError if a command fails.
    """
    folder = work / "sysadmin"
    folder.mkdir()
    target = folder / (source.stem + ".zip")
    zipped = _checked(["zip", "-q", "-6", "-j", str(target), str(source)], "zip")
    token = _checked(
        [
            *("curl", "-sS", "-u", f"{sandbox.client_id}:{sandbox.secret}"),
            *("-d", "grant_type=client_credentials", sandbox.url + "/oauth/token"),
        ],
        "curl (token)",
    )
    access = json.loads(token.stdout)["access_token"]
    zip_bytes = target.stat().st_size
    sent = _checked(
        [
            *("curl", "-sS", "-o", str(folder / "answer.json"), "-w", "%{http_code}"),
            *("-H", f"Authorization: Bearer {access}", "-F", f"deptFileUpload=@{target}"),
            f"{sandbox.url}/rest/upload/{GROUP}/zip",
        ],
        "curl -F",
    )
    read_at = sent.sampler.read_done("child", sent.started_at, zip_bytes)
    send = read_at - sent.started_at if read_at else None
    steps = [
        Step("zip -6", zipped.seconds, zipped.peak_mib),
        Step("token (curl -u)", token.seconds, token.peak_mib),
        Step("send: curl -F read and sent the ZIP", send, sent.peak_mib),
        Step(SANDBOX_STEP, sent.seconds - send if send else None),
    ]
    total = zipped.seconds + token.seconds + sent.seconds
    peak = max((p for p in (zipped.peak_mib, token.peak_mib, sent.peak_mib) if p), default=None)
    return Upload("zip -6 && curl -F", total, zip_bytes, int(sent.stdout or 0), steps, peak)


def _checked(args: list[str], what: str) -> Finished:
    with open(os.devnull, "wb") as quiet:
        done = run_measured(args, stderr=quiet)
    if done.returncode != 0:
        raise RuntimeError(f"{what} exited with {done.returncode}")
    return done


def compressions(work: Path, source: Path) -> list[Compression]:
    """Each engine and level of ENGINES on the whole file, each as its own process."""
    rows = []
    for engine, levels, label, module in ENGINES:
        if module is not None and importlib.util.find_spec(module) is None:
            rows.append(Compression(label, None, note="not installed"))
            continue
        if engine == "dropd":
            label = f"dropd's build_zip: {_dropd_engine()}, CRC-32, SHA-256 of CSV and ZIP"
        rows += [_compress(work, source, engine, level, label) for level in levels]
    return rows


def _dropd_engine() -> str:
    """The deflate engine dropd's archive module picked in this interpreter."""
    done = subprocess.run(
        [sys.executable, str(WORKER), "engine"], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def _compress(work: Path, source: Path, engine: str, level: int | None, label: str) -> Compression:
    target = work / f"compressed-{engine}-{level}"
    args = [sys.executable, str(WORKER), engine, str(level or 0), str(source), str(target)]
    done = run_measured(args)
    if done.returncode != 0:
        return Compression(label, level, note=f"failed (exit {done.returncode})")
    size = target.stat().st_size
    target.unlink()
    return Compression(label, level, done.seconds, size, done.peak_mib)


@dataclass(frozen=True)
class SizeResult:
    """Everything measured on one file."""

    size: int
    rows: int
    dropd: DropdRun
    sysadmin: Upload | None
    sysadmin_note: str
    compressions: list[Compression]
    validated: Validated | None = None
    upload: UploadSpeed | None = None
