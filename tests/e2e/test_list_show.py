"""`dropd list` and `dropd show` on a real daemon's folders, with the config found through
$DROPD_CONFIG; and `dropd run` with a config that is missing or broken says so on stderr."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from harness import (
    USERS,
    DaemonProcess,
    SandboxProcess,
    dropd_command,
    failed_and_sent,
    music_group,
    start_daemon,
)


def dropd_with(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`dropd ARGS` with the config named only by $DROPD_CONFIG."""
    env = {**os.environ, "DROPD_CONFIG": str(config)}
    return subprocess.run(
        [*dropd_command(), *args], capture_output=True, text=True, timeout=120, env=env
    )


def test_list_and_show_the_batches_of_a_group(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    config, folder = music_group(tmp_path, sandbox)
    processes.append(start_daemon(config, tmp_path / "daemon.log"))
    error, receipt = failed_and_sent(folder, "users.csv", USERS)
    failed, sent = error.parent.name, receipt.parent.name

    listed = dropd_with(config, "list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["GROUP", "BATCH", "STATE", "FILES", "WHEN", "REASON"]
    assert [line.split()[1] for line in lines[1:]] == [sent, failed], "newest first"
    assert lines[1].split()[2:4] == ["sent", "1"] and lines[1].endswith("sent, 200")
    assert lines[2].split()[2] == "failed" and "intake: " in lines[2]

    as_json = json.loads(dropd_with(config, "list", "music", "--json").stdout)
    assert [(b["batch"], b["state"], b["files"]) for b in as_json] == [
        (sent, "sent", ["users.csv"]),
        (failed, "failed", ["notes.txt"]),
    ]
    only = dropd_with(config, "list", "--state", "held")
    assert (only.returncode, only.stdout) == (0, "no held batches in group music\n")

    shown = dropd_with(config, "show", "music", failed)
    assert shown.returncode == 0, shown.stderr
    assert f"batch {failed} of group music: failed at step intake" in shown.stdout
    assert "rename or fix the file and drop it again" in shown.stdout
    stored = json.loads(dropd_with(config, "show", "--json", "music", sent).stdout)
    assert stored == json.loads(receipt.read_text())

    missing = dropd_with(config, "show", "music", "20990101T000000.000000Z-beef")
    assert missing.returncode == 1 and "has no batch" in missing.stderr
    unknown = dropd_with(config, "show", "nosuch", failed)
    assert unknown.returncode == 2 and 'no group "nosuch"' in unknown.stderr


def test_run_says_on_stderr_why_it_cannot_start(tmp_path: Path) -> None:
    gone = dropd_with(tmp_path / "none.toml", "run")
    assert gone.returncode == 2
    assert gone.stderr == f"dropd: no config at {tmp_path / 'none.toml'} (from $DROPD_CONFIG; " + (
        "fix it, or give --config)\n"
    )
    broken = tmp_path / "broken.toml"
    broken.write_text("[daemon]\nsettle_seconds = -1\n")
    ran = dropd_with(broken, "run")
    assert ran.returncode == 2
    assert ran.stderr.startswith("dropd run: daemon.settle_seconds: ")
    assert json.loads(ran.stdout.splitlines()[0])["event"] == "config_invalid"
