"""The uploads: dropd from drop to receipt, and a sysadmin's zip + curl, to a server.

The server is a `dropd sandbox` (which unzips and checks each upload, as the provider
would) or the discard sink (bench/sink.py, which only reads it). With the sink, the send
ends at the moment the sink read the upload's last byte, and the body's size is checked
against the ZIP's: the upload was really sent, whole, with the token.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compression import Compression
from procs import (
    KIB,
    Daemon,
    Finished,
    Sampler,
    Server,
    proc_field,
    run_measured,
    stop,
    wait_until,
    write_config,
)
from sink import Received, Sink
from speeds import Validated
from upload_speed import UploadSpeed

GROUP = "bench"
WINDOWS = {"settle_seconds": 0.5, "quiet_seconds": 0.5}
WINDOW_SECONDS = sum(WINDOWS.values())
DAEMON_SETTINGS = {**WINDOWS, "max_wait_seconds": 10, "read_timeout_seconds": 900}
SANDBOX_STEP = "sandbox: parse, unzip, check, store"
MULTIPART_SLACK = 16 * KIB  # a multipart body's boundaries and part headers, generously
# dropd's steps, each from one log event (or moment) to the next, by server: the sandbox's
# end of the send is read from dropd's `rchar`, the sink's is the sink's own last byte.
_CLOSED = (
    ("settle: seen complete, claimed", "drop", "file_claimed"),
    ("quiet window, batch closed", "file_claimed", "batch_closed"),
    ("ZIP written (deflate + SHA-256)", "batch_closed", "batch_zipped"),
    ("token", "batch_zipped", "upload_started"),
)
_FILED = ("filed: receipt, moved to sent/", "upload_answered", "batch_sent")
DROPD_STEPS = {
    "sandbox": (
        *_CLOSED,
        ("send: ZIP read and sent", "upload_started", "zip_read"),
        (SANDBOX_STEP, "zip_read", "upload_answered"),
        _FILED,
    ),
    "sink": (
        *_CLOSED,
        ("send: until the sink read its last byte", "upload_started", "received"),
        ("the sink's 200, to dropd's log event", "received", "upload_answered"),
        _FILED,
    ),
}


@dataclass(frozen=True)
class Step:
    """One step of an upload: its seconds, and the sender's peak RSS (MiB) during it."""

    name: str
    seconds: float | None
    peak_mib: float | None = None


@dataclass(frozen=True)
class Upload:
    """One way from a CSV to the server's answer, timed whole and by step; `body_bytes`,
    the request body the sink read (None for the sandbox)."""

    how: str
    seconds: float
    zip_bytes: int
    status: int | None
    steps: list[Step]
    peak_mib: float | None
    body_bytes: int | None = None


@dataclass(frozen=True)
class DropdRun:
    """dropd's upload, plus: drop to the 200 with the windows taken off, RSS idle, and the
    server's peak RSS."""

    upload: Upload
    to_answer: float | None
    idle_mib: float | None
    server_peak_mib: float | None
    helper_peak_mib: float | None = None  # dropd's child processes', where it started any


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
        # Its folder goes with the benchmark's at the end: quote the log's end here.
        last = daemon.log.read_text(encoding="utf-8", errors="replace").splitlines()[-5:]
        raise RuntimeError(
            f"dropd run exited with {daemon.process.returncode}; its log ends: " + "\n".join(last)
        )
    if failed := sorted((folder / "failed").glob("*/error.json")):
        raise RuntimeError(f"the batch failed: {failed[0].read_text(encoding='utf-8')}")
    return _receipt(folder) is not None


def _received(server: Server, since: float, zip_bytes: int) -> Received | None:
    """The sink's record of the one upload it read after `since`; None from a sandbox.

    Raises RuntimeError unless there is exactly one, sent with a token the sink issued,
    its body the ZIP and a multipart form's few hundred bytes around it.
    """
    if not isinstance(server, Sink):
        return None
    found = [r for r in server.uploads() if r.started_at >= since]
    if len(found) != 1 or not found[0].authorized:
        raise RuntimeError(f"the sink read {len(found)} uploads with its token, not 1")
    if not zip_bytes < found[0].bytes <= zip_bytes + MULTIPART_SLACK:
        raise RuntimeError(f"the sink read {found[0].bytes:,} bytes for a {zip_bytes:,}-byte ZIP")
    return found[0]


def dropd_upload(work: Path, source: Path, server: Server, deadline: float) -> DropdRun:
    """Drop `source` in a fresh `dropd run`'s folder and time it to its receipt."""
    root, folder = work / "dropd", work / "dropd" / "drop"
    folder.mkdir(parents=True)
    config = write_config(root, server, folder, GROUP, DAEMON_SETTINGS)
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
            helper = _children_peak_mib(pid)
        server_peak = _mib(proc_field(server.process.pid, "VmHWM"))
    finally:
        stop(daemon.process)
    found = _receipt(folder)
    assert found is not None
    receipt = json.loads(found.read_text(encoding="utf-8"))
    received = _received(server, dropped, int(receipt["zip"]["bytes"]))
    memory = (idle, peak, server_peak)
    run = _dropd_result(daemon, sampler, moments, receipt, memory, received)
    return dataclasses.replace(run, helper_peak_mib=helper)


def _children_peak_mib(pid: int) -> float | None:
    """The summed VmHWM of `pid`'s child processes, if it has any (dropd starts none now)."""
    children: list[str] = []
    # Each thread lists the children it started: a child started from a worker shows there.
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            children += task.read_text().split()
    peaks = [proc_field(int(child), "VmHWM") for child in children]
    known = [p for p in peaks if p is not None]
    return _mib(sum(known)) if known else None


def _dropd_result(
    daemon: Daemon,
    sampler: Sampler,
    moments: dict[str, float],
    receipt: dict[str, Any],
    memory: tuple[float | None, float | None, float | None],
    received: Received | None,
) -> DropdRun:
    zip_bytes = int(receipt["zip"]["bytes"])
    times = {**daemon.event_times(), **moments}
    if received is not None:
        times["received"] = received.last_byte_at
    elif "upload_started" in times:
        times["zip_read"] = sampler.read_done("dropd", times["upload_started"], zip_bytes) or 0.0
    kind = "sandbox" if received is None else "sink"
    steps = [_step(name, times, begin, end, sampler) for name, begin, end in DROPD_STEPS[kind]]
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
        received.bytes if received else None,
    )
    return DropdRun(upload, to_answer, memory[0], memory[2])


def _step(name: str, times: dict[str, float], start: str, end: str, sampler: Sampler) -> Step:
    begin, finish = times.get(start), times.get(end)
    if not begin or not finish:
        return Step(name, None)
    return Step(name, finish - begin, sampler.peak_mib("dropd", begin, finish))


def missing_tools() -> list[str]:
    """The commands the sysadmin's script needs that are not installed."""
    return [tool for tool in ("zip", "curl") if shutil.which(tool) is None]


def sysadmin_upload(work: Path, source: Path, server: Server) -> Upload:
    """`zip -6`, a token with `curl -u`, then `curl -F` to `server`: timed whole.

    Raises RuntimeError if a command fails.
    """
    folder = work / "sysadmin"
    folder.mkdir()
    target = folder / (source.stem + ".zip")
    zipped = _checked(["zip", "-q", "-6", "-j", str(target), str(source)], "zip")
    token = _checked(
        [
            *("curl", "-sS", "-u", f"{server.client_id}:{server.secret}"),
            *("-d", "grant_type=client_credentials", server.url + "/oauth/token"),
        ],
        "curl (token)",
    )
    access = json.loads(token.stdout)["access_token"]
    zip_bytes = target.stat().st_size
    sent = _checked(
        [
            *("curl", "-sS", "-o", str(folder / "answer.json"), "-w", "%{http_code}"),
            *("-H", f"Authorization: Bearer {access}", "-F", f"deptFileUpload=@{target}"),
            f"{server.url}/rest/upload/{GROUP}/zip",
        ],
        "curl -F",
    )
    received = _received(server, sent.started_at, zip_bytes)
    steps = [
        Step("zip -6", zipped.seconds, zipped.peak_mib),
        Step("token (curl -u)", token.seconds, token.peak_mib),
        *_send_steps(sent, zip_bytes, received),
    ]
    total = zipped.seconds + token.seconds + sent.seconds
    peak = max((p for p in (zipped.peak_mib, token.peak_mib, sent.peak_mib) if p), default=None)
    status = int(sent.stdout or 0)
    body = received.bytes if received else None
    return Upload("zip -6 && curl -F", total, zip_bytes, status, steps, peak, body)


def _send_steps(sent: Finished, zip_bytes: int, received: Received | None) -> list[Step]:
    """`curl -F`'s run cut where the send ends: at the sink's last byte read, else (to the
    sandbox) when curl had read the whole ZIP from disk."""
    if received is not None:
        sent_at = received.last_byte_at - sent.started_at
        return [
            Step("send: curl -F, until the sink read its last byte", sent_at, sent.peak_mib),
            Step("the sink's 200, to curl's exit", sent.seconds - sent_at),
        ]
    read_at = sent.sampler.read_done("child", sent.started_at, zip_bytes)
    send = read_at - sent.started_at if read_at else None
    return [
        Step("send: curl -F read and sent the ZIP", send, sent.peak_mib),
        Step(SANDBOX_STEP, sent.seconds - send if send else None),
    ]


def _checked(args: list[str], what: str) -> Finished:
    with open(os.devnull, "wb") as quiet:
        done = run_measured(args, stderr=quiet)
    if done.returncode != 0:
        raise RuntimeError(f"{what} exited with {done.returncode}")
    return done


@dataclass(frozen=True)
class SizeResult:
    """Everything measured on one file: the sandbox runs (`dropd`, `sysadmin`: one each)
    and the sink runs (`sink_dropd`, `sink_sysadmin`: bench/headline.py's rounds)."""

    size: int
    rows: int
    dropd: DropdRun
    sysadmin: Upload | None
    sysadmin_note: str
    compressions: list[Compression]
    validated: Validated | None = None
    upload: UploadSpeed | None = None
    sink_dropd: list[DropdRun] = field(default_factory=list)
    sink_sysadmin: list[Upload] = field(default_factory=list)
