"""The processes the benchmark drives (`dropd sandbox`, `dropd run`, zip, curl) and their figures.

Memory figures come from `/proc/PID/status` (`VmRSS` now, `VmHWM` the peak so far), read
while the process runs. A sender's `rchar` in `/proc/PID/io`
counts the bytes it has read from files: once it has read its whole ZIP, the upload is sent
and what follows is the sandbox's work. (The discard sink, bench/sink.py, says itself when
it read an upload's last byte.)
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Protocol, Self

KIB = 1024
MIB = 1 << 20


def dropd_command() -> list[str]:
    """The `dropd` console script beside this interpreter, else on PATH, else the module."""
    script = Path(sys.executable).parent / "dropd"
    if script.exists():
        return [str(script)]
    found = shutil.which("dropd")
    return [found] if found else [sys.executable, "-m", "daemon"]


def proc_field(pid: int, name: str, file: str = "status") -> int | None:
    """A number from `/proc/PID/status` (in KiB for Vm* fields) or `/proc/PID/io`."""
    try:
        text = Path(f"/proc/{pid}/{file}").read_text()
    except OSError:  # ended, or not ours to read
        return None
    match = re.search(rf"^{name}:\s+(\d+)", text, re.MULTILINE)
    return int(match.group(1)) if match else None


def wait_until(condition: Callable[[], bool], what: str, deadline: float) -> None:
    """Poll `condition` every 20 ms; raises TimeoutError naming `what` after `deadline` s."""
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError(f"timed out after {deadline:g} s waiting for {what}")
        time.sleep(0.02)


def stop(process: subprocess.Popen[Any], grace: float = 30.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Server(Protocol):
    """What a dropd config and the sysadmin's script need of the server they send to: a
    `dropd sandbox` (`Sandbox`) or the discard sink (bench/sink.py's `Sink`)."""

    process: subprocess.Popen[str]
    url: str
    client_id: str
    secret: str


@dataclass
class Sandbox:
    """`dropd sandbox --port 0` with one client, its store on the benchmark's disk."""

    process: subprocess.Popen[str]
    url: str
    client_id: str
    secret: str

    @classmethod
    def start(cls, store: Path, log: Path, client_id: str, secret: str) -> Sandbox:
        """Start it and read its address from its first line; raises RuntimeError if none."""
        args = [*dropd_command(), "sandbox", "--port", "0", "--store", str(store)]
        args += ["--client", f"{client_id}:{secret}"]
        with open(log, "wb") as err:
            process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, text=True)
        assert process.stdout is not None
        first = process.stdout.readline()
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", first)
        if not match:
            stop(process)
            raise RuntimeError(f"dropd sandbox did not start (first line {first!r}); see {log}")
        return cls(process, match.group(1), client_id, secret)

    def stop(self) -> None:
        stop(self.process)
        if self.process.stdout is not None:
            self.process.stdout.close()


def write_config(
    root: Path, server: Server, folder: Path, group: str, daemon: dict[str, Any]
) -> Path:
    """A dropd config for `group` on `folder`, sending to `server`; returns its path."""
    secret = root / "bench.secret"
    secret.write_text(server.secret + "\n", encoding="utf-8")
    secret.chmod(0o600)
    tables: dict[str, dict[str, Any]] = {
        "daemon": {"state_dir": str(root / "state"), **daemon},
        "environments.sandbox": {
            "token_url": server.url + "/oauth/token",
            "base_url": server.url,
            "client_id": server.client_id,
            "client_secret_file": str(secret),
        },
        f"groups.{group}": {"environment": "sandbox", "folder": str(folder)},
    }
    lines = []
    for name, values in tables.items():
        lines += [f"[{name}]", *(f"{k} = {json.dumps(v)}" for k, v in values.items()), ""]
    path = root / "dropd.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@dataclass
class Daemon:
    """`dropd run --config F`, its JSON log lines in a file."""

    process: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(cls, config: Path, log: Path) -> Daemon:
        with open(log, "wb") as out:
            args = [*dropd_command(), "run", "--config", str(config)]
            process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        return cls(process, log)

    def events(self) -> list[dict[str, Any]]:
        """Its log lines that are JSON objects."""
        found = []
        for line in self.log.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
        return [event for event in found if isinstance(event, dict)]

    def event_times(self) -> dict[str, float]:
        """The first time (epoch seconds) of each event in its log."""
        times: dict[str, float] = {}
        for event in self.events():
            moment = datetime.fromisoformat(str(event.get("timestamp"))).timestamp()
            times.setdefault(str(event.get("event")), moment)
        return times

    def wait_ready(self, deadline: float = 60.0) -> None:
        """Wait for `daemon_ready`; raises RuntimeError if it exits first."""

        def ready() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"dropd run exited with {self.process.returncode}; see {self.log}"
                )
            return any(e.get("event") == "daemon_ready" for e in self.events())

        wait_until(ready, "dropd run to be ready", deadline)


@dataclass
class Sample:
    at: float  # epoch seconds
    rss_kib: dict[str, int | None]
    hwm_kib: dict[str, int | None]
    read_chars: dict[str, int | None]


class Periodic:
    """`sample()` every `interval` seconds in a thread, from the `with` to its end."""

    interval: float

    def __enter__(self) -> Self:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        raise NotImplementedError


@dataclass
class Sampler(Periodic):
    """Samples the RSS and read count of named processes every `interval` s, in a thread."""

    pids: dict[str, int]
    interval: float = 0.02
    samples: list[Sample] = field(default_factory=list)

    def sample(self) -> None:
        pids = dict(self.pids)  # a process may be added while we sample
        rss = {name: proc_field(pid, "VmRSS") for name, pid in pids.items()}
        hwm = {name: proc_field(pid, "VmHWM") for name, pid in pids.items()}
        chars = {name: proc_field(pid, "rchar", "io") for name, pid in pids.items()}
        self.samples.append(Sample(time.time(), rss, hwm, chars))

    def peak_mib(self, name: str, start: float, end: float) -> float | None:
        """The highest RSS of `name` sampled between `start` and `end`, in MiB."""
        values = [
            kib for s in self.samples if start <= s.at <= end and (kib := s.rss_kib.get(name))
        ]
        return max(values) / KIB if values else None

    def hwm_mib(self, name: str) -> float | None:
        """The highest VmHWM of `name` sampled, in MiB: its peak, bar its last few ms."""
        values = [kib for s in self.samples if (kib := s.hwm_kib.get(name))]
        return max(values) / KIB if values else None

    def read_done(self, name: str, after: float, count: int) -> float | None:
        """When `name` had read `count` bytes more than when `after` came (or since it
        started, if it was not sampled before), if it did.

        `rchar` counts what a process read from files, not from sockets: for the sender of
        an upload, reading the last of its ZIP is sending it (bar a few MB of socket buffer).
        """
        seen = [(s.at, c) for s in self.samples if (c := s.read_chars.get(name)) is not None]
        before = [c for at, c in seen if at <= after]
        later = [(at, c) for at, c in seen if at > after]
        base = before[-1] if before else 0
        return next((at for at, c in later if c >= base + count), None)


@dataclass(frozen=True)
class Finished:
    """A process run to its end: when, how long, exit code, peak RSS (MiB), stdout, samples."""

    started_at: float
    seconds: float
    returncode: int
    peak_mib: float | None
    stdout: bytes
    sampler: Sampler


def run_measured(args: list[str], stderr: IO[bytes] | None = None) -> Finished:
    """Run `args` to the end, timing it and sampling it as `child` every 10 ms.

    Its peak RSS is read from `/proc` (`VmHWM`) while it runs: `wait4`'s `ru_maxrss` would
    count the pages of this process that the child had before its `exec`.
    """
    started_at, started = time.time(), time.perf_counter()
    with Sampler({}, interval=0.01) as sampler:
        process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=stderr)
        sampler.pids["child"] = process.pid
        out, _ = process.communicate()  # our commands print little
        seconds = time.perf_counter() - started
    peak = sampler.hwm_mib("child")
    return Finished(started_at, seconds, process.returncode, peak, out, sampler)
