"""`dropd demo`: the sandbox, a daemon and a drop folder, and sample files travelling to sent/."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from importlib import resources
from pathlib import Path

from daemon.sandbox.server import Sandbox

CLIENT_ID = "dropd-demo"
CLIENT_SECRET = "demo-secret"
GROUP = "music"
DEADLINE_SECONDS = 60.0

CONFIG = """\
# Written by `dropd demo`: short windows so the files move within seconds.
[daemon]
state_dir = "{root}/state"
settle_seconds = 1
quiet_seconds = 2
max_wait_seconds = 20
log_format = "console"

[environments.sandbox]
token_url = "{token_url}"
base_url = "{base_url}"
client_id = "{client_id}"
client_secret_file = "{root}/sandbox.secret"

[groups.{group}]
environment = "sandbox"
folder = "{root}/drop/{group}"
friendly_name = "Jacobs School of Music (demo)"
"""


def run(args: argparse.Namespace) -> int:
    """`dropd demo`, as the command line asked for it."""
    return main(args.dir)


def main(root: Path | None = None) -> int:
    """Run the demo in `root` (a new temporary folder by default); 0 when the files arrived."""
    root = (root or Path(tempfile.mkdtemp(prefix="dropd-demo-"))).resolve()
    say(f"dropd demo in {root}")
    with Sandbox(root / "sandbox-store", clients={CLIENT_ID: CLIENT_SECRET}) as sandbox:
        config = write_config(root, sandbox.url, sandbox.token_url)
        say(f"sandbox API on {sandbox.url}; config {config}")
        daemon = subprocess.Popen(
            [sys.executable, "-m", "daemon", "run", "--config", str(config)],
            stdout=subprocess.PIPE,
            text=True,
        )
        ready = threading.Event()
        echo = threading.Thread(target=echo_log, args=(daemon, ready), daemon=True)
        echo.start()
        try:
            if not ready.wait(DEADLINE_SECONDS):
                say("the daemon did not start; read the log above for why")
                return 1
            drop_samples(root / "drop" / GROUP)
            receipt = wait_for_receipt(root / "drop" / GROUP, daemon)
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=60)
            echo.join(timeout=5)
        if receipt is None:
            say("the files did not reach sent/ in time; read the log above for why")
            return 1
        explain(root, receipt, sandbox.uploads())
    return 0


def echo_log(daemon: subprocess.Popen[str], ready: threading.Event) -> None:
    """Show the daemon's log lines as they come; set `ready` once it says so."""
    assert daemon.stdout is not None
    for line in daemon.stdout:
        print(line, end="", flush=True)
        if "daemon_ready" in line:
            ready.set()


def say(text: str) -> None:
    print(f"==> {text}", flush=True)


def write_config(root: Path, base_url: str, token_url: str) -> Path:
    """The demo's config and secret file; returns the config's path."""
    (root / "drop" / GROUP).mkdir(parents=True, exist_ok=True)
    secret = root / "sandbox.secret"
    secret.write_text(CLIENT_SECRET + "\n", encoding="utf-8")
    secret.chmod(0o600)
    config = root / "dropd.toml"
    config.write_text(
        CONFIG.format(
            root=root, token_url=token_url, base_url=base_url, client_id=CLIENT_ID, group=GROUP
        ),
        encoding="utf-8",
    )
    return config


def drop_samples(folder: Path) -> None:
    """Drop the sample files the way a careful job does: write a temporary name, rename."""
    samples = resources.files("daemon.commands") / "samples"
    for sample in sorted(samples.iterdir(), key=lambda s: s.name):
        temporary = folder / f"{sample.name}.part"
        temporary.write_bytes(sample.read_bytes())
        os.rename(temporary, folder / sample.name)
        say(f"dropped {sample.name}")


def wait_for_receipt(folder: Path, daemon: subprocess.Popen[str]) -> Path | None:
    """The first receipt under sent/, or None if none came in time or the daemon died."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline and daemon.poll() is None:
        receipts = sorted((folder / "sent").glob("*/*/receipt.json"))
        if receipts:
            return receipts[0]
        time.sleep(0.2)
    return None


def explain(root: Path, receipt: Path, uploads: list[Path]) -> None:
    """Say what happened and where to look."""
    record = json.loads(receipt.read_text(encoding="utf-8"))
    say(
        f"batch {record['batch']} answered HTTP {record['status']}: "
        f"{record['answer'].get('message') if isinstance(record['answer'], dict) else ''}"
    )
    say(f"the originals and receipt.json are in {receipt.parent}")
    for upload in uploads:
        with zipfile.ZipFile(upload / "upload.zip") as archive:
            names = ", ".join(archive.namelist())
        say(f"the sandbox received {upload / 'upload.zip'}: {names}")
    say(
        f"look around in {root}: dropd.toml (the config), drop/{GROUP}/sent/ (the originals "
        "and receipts), sandbox-store/ (what the API received)"
    )
    say(
        "next: docs/operator/install.md installs dropd as a hardened service, from "
        "config/dropd.systemd.toml; `dropd verify` then checks each group against the real API"
    )
