"""Real processes for end-to-end tests: `dropd sandbox` and `dropd run`, driven over files."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import warnings
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client.parser import text_string_to_metric_families

DEADLINE = 60.0  # generous: tests never fail because the machine was slow
T = TypeVar("T")


def dropd_command() -> list[str]:
    """The installed `dropd` console script, or the module when it is not on PATH."""
    script = Path(sys.executable).parent / "dropd"
    return [str(script)] if script.exists() else [sys.executable, "-m", "daemon"]


def wait_for(condition: Callable[[], T | None], what: str, deadline: float = DEADLINE) -> T:
    """Poll `condition` until it returns something truthy; fail naming `what` after `deadline`."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {deadline:g} s waiting for {what}")


@dataclass
class SandboxProcess:
    """`dropd sandbox` as a real process on 127.0.0.1."""

    store: Path
    process: subprocess.Popen[str]
    url: str

    @property
    def token_url(self) -> str:
        return self.url + "/oauth/token"

    def uploads(self) -> list[Path]:
        """Accepted uploads, in arrival order."""
        if not self.store.is_dir():
            return []
        return sorted(p for p in self.store.iterdir() if (p / "request.json").exists())

    def request(self, upload: Path) -> dict[str, Any]:
        return dict(json.loads((upload / "request.json").read_text(encoding="utf-8")))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=20)
        if self.process.stdout is not None:
            self.process.stdout.close()


def start_sandbox(store: Path, clients: list[str], *extra_args: str) -> SandboxProcess:
    """Start `dropd sandbox --port 0 [EXTRA_ARGS]` and read its address from its first line."""
    args = [*dropd_command(), "sandbox", "--port", "0", "--store", str(store), *extra_args]
    for client in clients:
        args += ["--client", client]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    first = process.stdout.readline()
    match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", first)
    assert match, f"unexpected first line from dropd sandbox: {first!r}"
    return SandboxProcess(store, process, match.group(1))


@dataclass
class DaemonProcess:
    """`dropd run --config F` as a real process; its stdout goes to a file we read."""

    config: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    env: dict[str, str] = field(default_factory=dict)

    def text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def events(self) -> list[dict[str, Any]]:
        """Every log line as JSON (fails the test on a line that is not JSON). The stderr
        line `dropd run: PROBLEM`, which says a `config_invalid` event for a person, is not
        one."""
        lines = [
            line
            for line in self.text().splitlines()
            if line.strip() and not line.startswith("dropd run: ")
        ]
        return [json.loads(line) for line in lines]

    def named(self, event: str, **fields: Any) -> list[dict[str, Any]]:
        """The log events called `event` whose fields match."""
        return [
            line
            for line in self.events()
            if line.get("event") == event and all(line.get(k) == v for k, v in fields.items())
        ]

    def wait_event(self, event: str, **fields: Any) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            if lines := self.named(event, **fields):
                return lines[0]
            assert self.process.poll() is None, f"dropd exited:\n{self.text()}"
            return None

        return wait_for(found, f"log event {event} {fields}")

    def wait_status(self, group: str = "music", **fields: Any) -> dict[str, Any]:
        """Wait until the status file written by this very daemon (its state_dir beside its
        config) shows `group` with `fields`; fails if the daemon exits meanwhile."""
        state_dir = self.config.parent / "state"

        def shown() -> dict[str, Any] | None:
            assert self.process.poll() is None, f"dropd exited:\n{self.text()}"
            try:
                data = json.loads((state_dir / "status.json").read_text(encoding="utf-8"))
            except (FileNotFoundError, ValueError):
                return None
            entry = group_status(state_dir, group)
            if data.get("pid") != self.process.pid or entry is None:
                return None
            return entry if all(entry.get(k) == v for k, v in fields.items()) else None

        return wait_for(shown, f"status of {group} with {fields}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_daemon(config: Path, log_path: Path, env: dict[str, str] | None = None) -> DaemonProcess:
    """Start `dropd run --config F` with stdout and stderr in `log_path`."""
    full_env = {**os.environ, **(env or {})}
    out = open(log_path, "wb")  # noqa: SIM115 - the child holds it; closed with the test
    process = subprocess.Popen(
        [*dropd_command(), "run", "--config", str(config)],
        stdout=out,
        stderr=subprocess.STDOUT,
        env=full_env,
    )
    out.close()
    return DaemonProcess(config, log_path, process, env or {})


def start_ready(
    processes: list[SandboxProcess | DaemonProcess],
    config: Path,
    log_path: Path,
    env: dict[str, str] | None = None,
) -> DaemonProcess:
    """`dropd run` (see `start_daemon`), stopped with the test, once it says it is ready."""
    daemon = start_daemon(config, log_path, env)
    processes.append(daemon)
    daemon.wait_event("daemon_ready")
    return daemon


def toml_config(
    root: Path,
    environments: dict[str, dict[str, Any]],
    groups: dict[str, dict[str, Any]],
    **daemon: Any,
) -> Path:
    """Write a dropd config under `root` with fast windows; returns its path."""
    settings = {
        "state_dir": str(root / "state"),
        "settle_seconds": 0.3,
        "quiet_seconds": 0.5,
        "max_wait_seconds": 10,
        **daemon,
    }
    lines = ["[daemon]", *(f"{k} = {_toml(v)}" for k, v in settings.items())]
    for section, tables in (("environments", environments), ("groups", groups)):
        for name, values in tables.items():
            lines += ["", f"[{section}.{name}]", *(f"{k} = {_toml(v)}" for k, v in values.items())]
    path = root / "dropd.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _toml(value: Any) -> str:
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def sandbox_environment(
    sandbox: SandboxProcess, client_id: str, secret_file: Path
) -> dict[str, Any]:
    return {
        "token_url": sandbox.token_url,
        "base_url": sandbox.url,
        "client_id": client_id,
        "client_secret_file": str(secret_file),
    }


def second_sandbox(
    root: Path, processes: list[SandboxProcess | DaemonProcess]
) -> tuple[SandboxProcess, dict[str, Any]]:
    """A sandbox beside the `sandbox` fixture's: client `unit-b`, store `root/store-b`,
    stopped with the test; and an environment of it, its secret in `root/b`."""
    box = start_sandbox(root / "store-b", ["unit-b:secret-b-5678"])
    processes.append(box)
    return box, sandbox_environment(box, "unit-b", write_secret(root / "b", "secret-b-5678"))


def write_secret(path: Path, secret: str) -> Path:
    path.write_text(secret + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def drop(folder: Path, name: str, content: bytes) -> Path:
    """Drop a file as a careful writer does: a temporary name, then a rename."""
    temporary = folder / f".{name}.part"
    temporary.write_bytes(content)
    os.rename(temporary, folder / name)
    return folder / name


def drop_folders(root: Path, *names: str) -> dict[str, Path]:
    """A drop folder for each name under `root/drop/`, created."""
    made = {name: root / "drop" / name for name in names}
    for folder in made.values():
        folder.mkdir(parents=True, exist_ok=True)
    return made


def zipped(entries: Mapping[str, bytes] | Iterable[tuple[str, bytes]]) -> bytes:
    """A deflated ZIP of `entries` in order (name, bytes); a list may name a file twice."""
    pairs = entries.items() if isinstance(entries, Mapping) else entries
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns of a duplicate name
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, data in pairs:
                archive.writestr(name, data)
    return buffer.getvalue()


def receipts(folder: Path) -> list[Path]:
    return sorted((folder / "sent").glob("*/*/receipt.json"))


def errors(folder: Path) -> list[Path]:
    return sorted((folder / "failed").glob("*/error.json"))


def read(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text(encoding="utf-8")))


def script_sandbox(sandbox: SandboxProcess, answers: list[dict[str, Any]]) -> None:
    """Queue the sandbox's next answers (faults) over its control endpoint."""
    request = urllib.request.Request(
        sandbox.url + "/_sandbox/script",
        data=json.dumps(answers).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200


def run_dropd(*args: str) -> subprocess.CompletedProcess[str]:
    """Run a short `dropd` command to its end."""
    return subprocess.run(
        [*dropd_command(), *args], capture_output=True, text=True, timeout=120, check=False
    )


def failed_and_sent(folder: Path, name: str, content: bytes) -> tuple[Path, Path]:
    """Drop a file intake refuses, then `name`; wait for the first's error.json and the
    second's receipt.json, and return both."""
    drop(folder, "notes.txt", b"not for upload")
    [error] = wait_for(lambda: errors(folder), "the intake failure")
    drop(folder, name, content)
    [receipt] = wait_for(lambda: receipts(folder), "a sent batch")
    return error, receipt


def assert_refused(command: str, config: Path, group: str, cases: dict[str, str]) -> None:
    """`dropd COMMAND --config CONFIG GROUP BATCH` exits 1 for each batch of `cases`, its
    stderr a `dropd COMMAND: ` line that says why (the case's value)."""
    for batch, why in cases.items():
        done = run_dropd(command, "--config", str(config), group, batch)
        assert done.returncode == 1, (batch, done.stdout)
        assert done.stderr.startswith(f"dropd {command}: ") and why in done.stderr, done.stderr


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on just now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    """Every sample at http://127.0.0.1:PORT/metrics, by name and labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float | None:
    """The value of sample `name` with exactly `labels`, None if the scrape lacks it."""
    return samples.get((name, frozenset(labels.items())))


class Sampling:
    """Calls `sample` every `interval` seconds in a thread, from now until `stop`, and once
    more then: what dropd writes may last only a moment, and a look at the end would miss it."""

    def __init__(self, sample: Callable[[], None], interval: float) -> None:
        self._sample, self._interval = sample, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._sample()


def uploads_by_batch(sandbox: SandboxProcess) -> dict[str, list[Path]]:
    """The sandbox's accepted uploads by batch id (dropd names them `BATCH.zip`, or
    `BATCH-N.zip` for part N of a batch cut to `max_upload_bytes`)."""
    found: dict[str, list[Path]] = {}
    for upload in sandbox.uploads():
        for part in sandbox.request(upload)["parts"]:
            match = re.fullmatch(r"(\d{8}T\d{6}\.\d{6}Z-[0-9a-f]+)(-\d+)?\.zip", part["filename"])
            assert match, f"{upload}: {part['filename']!r} is not named after a batch"
            found.setdefault(match.group(1), []).append(upload)
    return found


def sent_files(folder: Path) -> dict[str, list[bytes]]:
    """Every file in sent/ by name (receipts aside), each copy's bytes."""
    found: dict[str, list[bytes]] = {}
    for path in sorted((folder / "sent").glob("*/*/*")):
        if path.name != "receipt.json":
            found.setdefault(path.name, []).append(path.read_bytes())
    return found


def drained(folder: Path) -> bool:
    """True when no file waits at the top of `folder` and no batch is in `.dropd/work/`."""
    work = folder / ".dropd" / "work"
    waiting = [p for p in folder.iterdir() if not p.is_dir()]
    return not waiting and (not work.is_dir() or not any(work.iterdir()))


def group_status(state_dir: Path, group: str) -> dict[str, Any] | None:
    """The group's entry in `state_dir/status.json`, or None until the daemon has written it."""
    try:
        data = json.loads((state_dir / "status.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    for entry in data.get("groups", []):
        if entry.get("group") == group:
            return dict(entry)
    return None


USERS = (
    b"user_id,login_id,first_name,last_name,email,status\n"
    b"g1,ada@example.edu,Ada,Lovelace,ada@example.edu,active\n"
)
COURSES = (
    b"course_id,short_name,long_name,account_id,term_id,status\n"
    b"C1,C 1,Course One,acct,2026,active\n"
)


def music_group(
    tmp_path: Path,
    sandbox: SandboxProcess,
    group_extra: dict[str, Any] | None = None,
    **daemon: Any,
) -> tuple[Path, Path]:
    """A config with group `music` on environment `test` (client `unit-a`) and its folder;
    returns (config, folder)."""
    folder = tmp_path / "drop" / "music"
    folder.mkdir(parents=True)
    secret = write_secret(tmp_path / "test.secret", "secret-a-1234")
    group = {"environment": "test", "folder": str(folder), **(group_extra or {})}
    environments = {"test": sandbox_environment(sandbox, "unit-a", secret)}
    return toml_config(tmp_path, environments, {"music": group}, **daemon), folder


class NotifySocket:
    """A unix datagram socket standing in for systemd's: set `env` on the daemon, then read
    what it sends with `wait` (each message as {"KEY": "value"} with its arrival time)."""

    def __init__(self) -> None:
        # A short folder of its own: a socket path must fit in 108 bytes.
        self.folder = Path(tempfile.mkdtemp(prefix="dropd-notify-"))
        self.path = self.folder / "notify"
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(str(self.path))
        self.received: list[tuple[float, dict[str, str]]] = []

    @property
    def env(self) -> dict[str, str]:
        return {"NOTIFY_SOCKET": str(self.path)}

    def _receive(self, timeout: float) -> bool:
        self.socket.settimeout(max(timeout, 0.001))
        try:
            data = self.socket.recv(65536)
        except TimeoutError:
            return False
        fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
        self.received.append((time.monotonic(), fields))
        return True

    def wait(
        self, key: str, value: str | None = None, after: int = 0, deadline: float = DEADLINE
    ) -> tuple[int, dict[str, str]]:
        """The first message from index `after` on that has `key` (equal to `value` if given);
        returns its index and fields."""
        end = time.monotonic() + deadline
        checked = after
        while True:
            for index in range(checked, len(self.received)):
                fields = self.received[index][1]
                if key in fields and (value is None or fields[key] == value):
                    return index, fields
            checked = max(checked, len(self.received))
            remaining = end - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out after {deadline:g} s waiting for {key}={value}")
            self._receive(remaining)

    def listen(self, seconds: float) -> None:
        """Keep receiving for `seconds`."""
        end = time.monotonic() + seconds
        while (remaining := end - time.monotonic()) > 0:
            self._receive(remaining)

    def times(self, key: str, after: int = 0) -> list[float]:
        """Arrival times of the messages from index `after` on that carry `key`."""
        return [moment for moment, fields in self.received[after:] if key in fields]

    def close(self) -> None:
        self.socket.close()
        self.path.unlink(missing_ok=True)
        self.folder.rmdir()


# -- a real unprivileged user -----------------------------------------------------------------

UNPRIVILEGED = (64_000, 64_000)  # a uid and gid no account uses: dropd's own user in a test


def _hidden_ancestors(path: Path) -> list[tuple[Path, str]]:
    """Each folder above `path` that others may not enter, with the name under it that leads
    on (a venv under /root, whose python the unprivileged user must reach)."""
    found = []
    for folder in reversed(path.parents):
        child = path.relative_to(folder).parts[0]
        if folder != Path("/") and not os.stat(folder).st_mode & 0o001:
            found.append((folder, child))
    return found


def as_user_command(uid: int, gid: int, command: list[str], scratch: Path) -> list[str]:
    """`command` run as `uid`:`gid` with no capability and no supplementary group. Where the
    interpreter lies under a folder others may not enter (a pyenv under /root), a private
    mount namespace lays a world-readable tmpfs over that folder with the one path needed
    bound back in, so the host's folders are never changed."""
    interpreter = Path(os.path.realpath(sys.executable))
    hidden = _hidden_ancestors(interpreter)
    drop_privileges = [
        "setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
        "--inh-caps=-all", "--bounding-set=-all", "--",
    ]  # fmt: skip
    if not hidden:
        return [*drop_privileges, *command]
    lines = ["set -e"]
    for number, (folder, child) in enumerate(hidden):
        keep = scratch / f"keep-{number}"
        keep.mkdir(parents=True, exist_ok=True)
        lines += [
            f"mount --bind '{folder / child}' '{keep}'",
            f"mount -t tmpfs -o mode=755 tmpfs '{folder}'",
            f"mkdir -p '{folder / child}'",
            f"mount --bind '{keep}' '{folder / child}'",
        ]
    lines.append('exec "$@"')
    script = "\n".join(lines)
    return [
        "unshare", "--mount", "--propagation", "private", "--",
        "sh", "-c", script, "sh", *drop_privileges, *command,
    ]  # fmt: skip


def unprivileged_problem(scratch: Path) -> str | None:
    """Why this machine cannot run dropd as an unprivileged user here; None when it can."""
    if os.geteuid() != 0:
        return "the tests do not run as root, so they cannot start a process as another user"
    if shutil.which("setpriv") is None:
        return "setpriv (util-linux) is not installed"
    probe = as_user_command(*UNPRIVILEGED, [*dropd_command(), "--version"], scratch)
    try:
        done = subprocess.run(probe, capture_output=True, text=True, timeout=60, check=False)
    except OSError as exc:
        return f"cannot start {probe[0]}: {exc}"
    if done.returncode != 0:
        return f"dropd does not start as uid {UNPRIVILEGED[0]}: {done.stderr.strip()[-300:]}"
    return None


def start_daemon_as(
    uid: int, gid: int, config: Path, log_path: Path, scratch: Path
) -> DaemonProcess:
    """`dropd run --config F` as `uid`:`gid` (see `as_user_command`)."""
    out = open(log_path, "wb")  # noqa: SIM115 - the child holds it; closed with the test
    command = [*dropd_command(), "run", "--config", str(config)]
    process = subprocess.Popen(
        as_user_command(uid, gid, command, scratch),
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**os.environ},
    )
    out.close()
    return DaemonProcess(config, log_path, process, {})
