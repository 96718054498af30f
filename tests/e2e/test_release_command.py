"""`dropd release` against the real daemon: a held batch goes to the back of the line and up
as it is; refusals say why; a held batch removed by hand, or sent, clears the Error; status
and metrics show it, after a restart too; a crash in the middle of the hold loses nothing."""

from __future__ import annotations

import shutil
import signal
from collections import Counter
from pathlib import Path

import pytest
from guardfiles import SECTIONS, held_ids, held_records, users_csv
from harness import (
    COURSES,
    DEADLINE,
    USERS,
    DaemonProcess,
    Samples,
    SandboxProcess,
    assert_refused,
    drop,
    failed_and_sent,
    free_port,
    music_group,
    read,
    receipts,
    run_dropd,
    sample,
    scrape,
    script_sandbox,
    start_daemon,
    start_ready,
    uploads_by_batch,
    wait_for,
)

from daemon.base import crashpoints

Processes = list[SandboxProcess | DaemonProcess]
GUARDED = users_csv(200, 150)


def started(tmp_path: Path, config: Path, processes: Processes, **env: str) -> DaemonProcess:
    """`dropd run`, ready, with a log of its own: a test may start more than one."""
    return start_ready(processes, config, tmp_path / f"daemon-{len(processes)}.log", env)


def test_release_sends_a_held_batch_at_the_back_of_the_line(
    tmp_path: Path, sandbox: SandboxProcess, processes: Processes
) -> None:
    config, folder = music_group(tmp_path, sandbox)
    daemon = started(tmp_path, config, processes)
    drop(folder, "users.csv", GUARDED)
    held = wait_for(lambda: held_ids(folder), "the batch held")[0]
    daemon.wait_status(status="Error", step="guard")

    # A later batch is in flight (the sandbox pauses) and another waits behind it.
    script_sandbox(sandbox, [{"pause": 3}])
    drop(folder, "courses.csv", COURSES)
    later = daemon.wait_event("upload_started")["batch"]
    drop(folder, "sections.csv", SECTIONS)
    last = daemon.wait_event("file_claimed", file="sections.csv")["batch"]
    daemon.wait_event("batch_closed", batch=last)

    done = run_dropd("release", "--config", str(config), "music", held)
    assert done.returncode == 0, done.stderr
    assert f"batch {held} of group music is released" in done.stdout
    assert "back in line" in done.stdout
    assert not (folder / "held" / held).exists()
    daemon.wait_event("batch_adopted", batch=held)

    wait_for(lambda: len(receipts(folder)) == 3, "all three batches sent")
    arrived = list(uploads_by_batch(sandbox))
    assert arrived == [later, last, held], "the released batch went up last, at the back"
    receipt = read(folder / "sent" / _day(folder, held) / held / "receipt.json")
    assert receipt["released"] is True
    assert receipt["released_by"] and receipt["released_at"]
    assert receipt["earlier_errors"][-1]["step"] == "guard"
    assert (receipt["files"][0]["name"], receipt["files"][0]["bytes"]) == (
        "users.csv",
        len(GUARDED),
    )
    assert (folder / "sent" / _day(folder, held) / held / "users.csv").read_bytes() == GUARDED
    daemon.wait_status(status="Valid", batches_held=0)
    assert daemon.stop() == 0


def _day(folder: Path, batch: str) -> str:
    [path] = (folder / "sent").glob(f"*/{batch}")
    return path.parent.name


def test_release_refuses_what_is_not_held(
    tmp_path: Path, sandbox: SandboxProcess, processes: Processes
) -> None:
    config, folder = music_group(tmp_path, sandbox)
    started(tmp_path, config, processes)
    drop(folder, "users.csv", GUARDED)
    held = wait_for(lambda: held_ids(folder), "the batch held")[0]
    error, receipt = failed_and_sent(folder, "courses.csv", COURSES)

    cases = {
        "20990101T000000.000000Z-beef": "there is no held batch",
        receipt.parent.name: "it was sent",
        error.parent.name: "it failed",
    }
    assert_refused("release", config, "music", cases)
    refused = run_dropd("release", "-c", str(config), "music", error.parent.name)
    assert "`dropd retry`" in refused.stderr

    done = run_dropd("retry", "--config", str(config), "music", held)
    assert done.returncode == 1 and "the guard holds it" in done.stderr, done.stderr
    assert "`dropd release`" in done.stderr
    done = run_dropd("release", "--config", str(config), "nosuch", held)
    assert done.returncode == 2 and 'no group "nosuch"' in done.stderr
    done = run_dropd("release", "--config", str(tmp_path / "missing.toml"), "music", held)
    missing = f"no config at {tmp_path / 'missing.toml'} (given with --config)"
    assert done.returncode == 2 and missing in done.stderr, done.stderr
    assert held_ids(folder) == [held], "nothing moved"
    assert (folder / "held" / held / "users.csv").read_bytes() == GUARDED


def test_release_a_held_batch_removed_by_hand_clears_the_error(
    tmp_path: Path, sandbox: SandboxProcess, processes: Processes
) -> None:
    config, folder = music_group(tmp_path, sandbox)
    daemon = started(tmp_path, config, processes, **{crashpoints.RESCAN_ENV: "0.5"})
    drop(folder, "users.csv", GUARDED)
    held = wait_for(lambda: held_ids(folder), "the batch held")[0]
    drop(folder, "courses.csv", COURSES)
    wait_for(lambda: receipts(folder), "the later batch sent")
    shown = daemon.wait_status(status="Error", step="guard", batches_held=1)
    assert f"held/{held}" in shown["reason"]

    text = run_dropd("status", "--config", str(config))
    assert text.returncode == 1
    assert "step:           guard" in text.stdout
    assert '"users.csv" has 150 of its 200 rows deleted (75%)' in text.stdout
    assert "held batches:   1" in text.stdout

    shutil.rmtree(folder / "held" / held)
    daemon.wait_status(status="Valid", step="", batches_held=0)
    assert run_dropd("status", "--config", str(config)).returncode == 0
    assert daemon.stop() == 0


def test_release_status_and_metrics_show_a_held_batch_across_a_restart(
    tmp_path: Path, sandbox: SandboxProcess, processes: Processes
) -> None:
    port = free_port()
    config, folder = music_group(tmp_path, sandbox, metrics_port=port)
    daemon = started(tmp_path, config, processes)
    drop(folder, "users.csv", USERS)
    wait_for(lambda: receipts(folder), "a sent batch")
    drop(folder, "users.csv", GUARDED)
    held = wait_for(lambda: held_ids(folder), "the batch held")[0]
    daemon.wait_status(status="Error", step="guard")

    music = {"group": "music"}
    got = wait_for(lambda: _scraped(port, "dropd_batches_total", outcome="held", **music), "held")
    assert got[("dropd_batches_total", frozenset({"outcome": "sent", **music}.items()))] == 1
    assert sample(got, "dropd_group_status", status="Error", **music) == 1
    assert sample(got, "dropd_group_error_step", step="guard", **music) == 1
    assert sample(got, "dropd_batches_held", **music) == 1
    assert sample(got, "dropd_batches_failed", **music) == 0
    assert daemon.stop() == 0

    again = started(tmp_path, config, processes)
    shown = again.wait_status(status="Error", step="guard", batches_held=1)
    assert held in shown["reason"] and "75%" in shown["reason"]
    got = wait_for(lambda: _scraped(port, "dropd_batches_held", **music), "the gauge")
    assert sample(got, "dropd_group_error_step", step="guard", **music) == 1
    assert sample(got, "dropd_batches_total", outcome="held", **music) == 0, "a new process"

    assert run_dropd("release", "--config", str(config), "music", held).returncode == 0
    wait_for(lambda: len(receipts(folder)) == 2, "the released batch sent")
    again.wait_status(status="Valid", batches_held=0)
    got = wait_for(lambda: _scraped(port, "dropd_batches_total", outcome="sent", **music), "sent")
    assert sample(got, "dropd_batches_held", **music) == 0
    assert "dropd_group_error_step" not in {name for name, _ in got}
    assert again.stop() == 0


def _scraped(port: int, name: str, **labels: str) -> Samples | None:
    """A scrape once sample `name` is there and not 0."""
    got = scrape(port)
    return got if sample(got, name, **labels) else None


@pytest.mark.parametrize("point", ["closed", "recorded", "moved"])
def test_release_crash_during_the_hold_loses_nothing(
    point: str, tmp_path: Path, sandbox: SandboxProcess, processes: Processes
) -> None:
    config, folder = music_group(tmp_path, sandbox)
    drop(folder, "users.csv", GUARDED)
    crashed = start_daemon(config, tmp_path / "crashed.log", {crashpoints.ENV: point})
    processes.append(crashed)
    assert crashed.process.wait(timeout=DEADLINE) == -signal.SIGKILL, crashed.text()
    [batch] = [p for p in (folder / ".dropd" / "work").iterdir() if not p.name.startswith(".")]
    manifest = read(batch / "manifest.json")
    if point == "closed":
        assert manifest["state"] == "claimed"
    else:
        assert manifest["state"] == "held" and manifest["record"]["step"] == "guard"
        assert manifest["record_file"] == "held.json"
    assert (batch / "files").exists() == (point != "moved")
    assert held_ids(folder) == ([batch.name] if point == "moved" else [])

    daemon = started(tmp_path, config, processes, **{crashpoints.ENV: ""})
    shown = daemon.wait_status(status="Error", step="guard", batches_held=1)
    assert batch.name in shown["reason"]
    wait_for(lambda: not any((folder / ".dropd" / "work").iterdir()), "the spool emptied")
    assert held_ids(folder) == [batch.name]
    filed = Counter(p.name for p in (folder / "held").glob("*/*"))
    assert filed == Counter({"users.csv": 1, "held.json": 1})
    assert (folder / "held" / batch.name / "users.csv").read_bytes() == GUARDED
    assert read(held_records(folder)[0])["guard"][0]["deleted"] == 150
    assert sandbox.uploads() == [] and receipts(folder) == []
    assert daemon.stop() == 0
