"""`dropd demo` as a newcomer runs it: one command, files from drop folder to the sandbox."""

from __future__ import annotations

import subprocess
import zipfile
from importlib import resources
from pathlib import Path

from harness import dropd_command


def test_demo_files_travel_to_sent_and_the_sandbox(tmp_path: Path) -> None:
    done = subprocess.run(
        [*dropd_command(), "demo", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    samples = {
        s.name: s.read_bytes() for s in (resources.files("daemon.commands") / "samples").iterdir()
    }
    [receipt] = sorted((tmp_path / "drop" / "music" / "sent").glob("*/*/receipt.json"))
    for name, content in samples.items():
        assert (receipt.parent / name).read_bytes() == content
    [upload] = sorted((tmp_path / "sandbox-store").glob("*/upload.zip"))
    with zipfile.ZipFile(upload) as archive:
        assert {n: archive.read(n) for n in archive.namelist()} == samples
    assert "daemon_ready" in done.stdout and "batch_sent" in done.stdout
    assert str(receipt.parent) in done.stdout, "the demo says where to look"
