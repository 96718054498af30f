"""SIGHUP: groups added and removed, a bad config refused, fixed credentials retried at once."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

from harness import (
    COURSES,
    USERS,
    DaemonProcess,
    SandboxProcess,
    drained,
    drop,
    drop_folders,
    errors,
    group_status,
    music_group,
    read,
    receipts,
    sandbox_environment,
    sent_files,
    start_daemon,
    start_ready,
    toml_config,
    wait_for,
    write_secret,
)


def environments(tmp_path: Path, sandbox: SandboxProcess) -> dict[str, dict[str, Any]]:
    """Environment `test`: the sandbox, client `unit-a` with its secret in a file."""
    secret = write_secret(tmp_path / "s", "secret-a-1234")
    return {"test": sandbox_environment(sandbox, "unit-a", secret)}


def test_reload_adds_and_removes_groups(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    drops = drop_folders(tmp_path, "music", "art")
    env = environments(tmp_path, sandbox)
    config = toml_config(
        tmp_path, env, {"music": {"environment": "test", "folder": str(drops["music"])}}
    )
    daemon = start_ready(processes, config, tmp_path / "daemon.log")

    toml_config(tmp_path, env, {"art": {"environment": "test", "folder": str(drops["art"])}})
    daemon.process.send_signal(signal.SIGHUP)
    reloaded = daemon.wait_event("config_reloaded")
    assert reloaded["added"] == ["art"] and reloaded["removed"] == ["music"]
    daemon.wait_event("group_removed", group="music")

    drop(drops["art"], "users.csv", USERS)
    drop(drops["music"], "users.csv", USERS)
    wait_for(lambda: receipts(drops["art"]), "the added group's receipt")
    assert (drops["music"] / "users.csv").exists(), "a removed group's folder is left alone"
    assert daemon.process.poll() is None


def test_reload_refuses_a_bad_config_and_keeps_running(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    drops = drop_folders(tmp_path, "music")
    env = environments(tmp_path, sandbox)
    config = toml_config(
        tmp_path, env, {"music": {"environment": "test", "folder": str(drops["music"])}}
    )
    daemon = start_ready(processes, config, tmp_path / "daemon.log")

    good = config.read_text(encoding="utf-8")
    config.write_text(good + '\n[groups.art]\nenvironment = "nowhere"\n', encoding="utf-8")
    daemon.process.send_signal(signal.SIGHUP)
    refused = daemon.wait_event("reload_refused")
    assert refused["problem"].startswith("groups.art.")

    drop(drops["music"], "users.csv", USERS)
    wait_for(lambda: receipts(drops["music"]), "a receipt under the old config")


def test_reload_with_a_fixed_secret_sends_the_waiting_batch(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    drops = drop_folders(tmp_path, "music")
    secret = write_secret(tmp_path / "s", "wrong-secret-0000")
    env = {"test": sandbox_environment(sandbox, "unit-a", secret)}
    # Long backoff: only the reload can explain a prompt send.
    config = toml_config(
        tmp_path,
        env,
        {"music": {"environment": "test", "folder": str(drops["music"])}},
        retry_initial_seconds=600,
        retry_max_seconds=900,
    )
    daemon = start_daemon(config, tmp_path / "daemon.log")
    processes.append(daemon)
    drop(drops["music"], "users.csv", USERS)
    waiting = daemon.wait_event("batch_waits", step="token")
    assert "rejected client 'unit-a'" in waiting["reason"]
    status = daemon.wait_status("music", status="Error")
    assert status["step"] == "token"
    assert not receipts(drops["music"]) and not list((drops["music"] / "failed").glob("*"))

    write_secret(secret, "secret-a-1234")
    daemon.process.send_signal(signal.SIGHUP)
    [receipt] = wait_for(lambda: receipts(drops["music"]), "the batch sent after the reload")
    assert read(receipt)["status"] == 200
    assert "wrong-secret-0000" not in daemon.text() and "secret-a-1234" not in daemon.text()


class Writer:
    """Drops numbered users files into chosen folders every few hundredths of a second."""

    def __init__(self, targets: list[Path]) -> None:
        self.targets = targets
        self.dropped: dict[Path, dict[str, bytes]] = {}
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            for folder in list(self.targets):
                self.count += 1
                name = f"users-{self.count:05d}.csv"
                content = USERS.replace(b"g1,", f"g{self.count},".encode())
                drop(folder, name, content)
                self.dropped.setdefault(folder, {})[name] = content

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def uploaded_groups(sandbox: SandboxProcess) -> list[str]:
    return [str(sandbox.request(upload)["group"]) for upload in sandbox.uploads()]


def test_reload_while_files_flow_adds_changes_and_removes_groups_losing_nothing(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    drops = drop_folders(tmp_path, "music", "art", "drama")
    env = environments(tmp_path, sandbox)
    music = {"environment": "test", "folder": str(drops["music"])}
    art = {"environment": "test", "folder": str(drops["art"])}
    config = toml_config(
        tmp_path, env, {"music": music, "art": art}, quiet_seconds=0.3, max_wait_seconds=1
    )
    daemon = start_ready(processes, config, tmp_path / "daemon.log")

    with Writer([drops["music"], drops["art"]]) as writer:
        wait_for(lambda: len(receipts(drops["art"])) >= 2, "art's batches going up")
        changed = {**music, "group_name": "music-2", "friendly_name": "Music, renamed"}
        drama = {"environment": "test", "folder": str(drops["drama"])}
        toml_config(
            tmp_path, env, {"music": changed, "drama": drama}, quiet_seconds=0.3, max_wait_seconds=1
        )
        writer.targets.remove(drops["art"])
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait_event("group_removed", group="art")
        writer.targets.append(drops["drama"])
        drop(drops["art"], "users-late.csv", USERS)
        wait_for(lambda: len(receipts(drops["drama"])) >= 2, "the added group's batches")

    for name in ("music", "drama"):
        wait_for(lambda name=name: drained(drops[name]), f"{name} filed")  # type: ignore[misc]
        assert sent_files(drops[name]) == {n: [c] for n, c in writer.dropped[drops[name]].items()}
    assert uploaded_groups(sandbox)[-1] in ("music-2", "drama")
    assert "music-2" in uploaded_groups(sandbox), "the changed group_name is used"
    status = wait_for(lambda: group_status(tmp_path / "state", "music"), "music's status")
    assert status["friendly_name"] == "Music, renamed"

    # The removed group: every file is sent, waiting in its spool, or still in the folder.
    art_dir = drops["art"]
    time.sleep(1.0)  # a removed group must not take the late file, however long we wait
    assert (art_dir / "users-late.csv").exists()
    waiting = {p.name for p in art_dir.glob(".dropd/work/*/files/*")}
    left = {p.name for p in art_dir.iterdir() if p.is_file()}
    sent = sent_files(art_dir)
    assert all(len(copies) == 1 for copies in sent.values())
    assert set(writer.dropped[art_dir]) == (set(sent) | waiting | left) - {"users-late.csv"}
    assert not (art_dir / "failed").exists()
    assert daemon.stop() == 0


def test_reload_keeps_the_state_dir_and_names_it_as_needing_a_restart(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    config, folder = music_group(tmp_path, sandbox)
    daemon = start_ready(processes, config, tmp_path / "daemon.log")

    moved = tmp_path / "moved-state"
    text = config.read_text(encoding="utf-8")
    config.write_text(
        text.replace(str(tmp_path / "state"), str(moved)).replace(
            "settle_seconds = 0.3", "settle_seconds = 0.2"
        ),
        encoding="utf-8",
    )
    daemon.process.send_signal(signal.SIGHUP)
    warned = daemon.wait_event("reload_needs_restart")
    assert warned["level"] == "warning" and warned["keys"] == ["daemon.state_dir"]
    assert "restart" in warned["reason"]
    reloaded = daemon.wait_event("config_reloaded")
    assert reloaded["restart_needed"] == ["daemon.state_dir"]
    assert not daemon.named("reload_refused"), "the rest of the config is applied"
    assert not moved.exists(), "nothing is written to a state_dir this process does not hold"

    drop(folder, "users.csv", USERS)
    wait_for(lambda: receipts(folder), "a receipt under the reloaded config")
    assert (tmp_path / "state" / "status.json").is_file()
    assert not moved.exists()
    assert daemon.process.poll() is None


def test_reload_applies_a_changed_log_level_and_log_format(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    config, folder = music_group(tmp_path, sandbox)
    daemon = start_ready(processes, config, tmp_path / "daemon.log")
    drop(folder, "users.csv", USERS)
    daemon.wait_event("batch_sent")

    # A state_dir moved too: its warning, written just before the new log settings apply,
    # says the reload has come (config_reloaded is an info line, no longer written).
    text = config.read_text(encoding="utf-8").replace(
        str(tmp_path / "state"), str(tmp_path / "moved")
    )
    config.write_text(
        text.replace("[daemon]\n", '[daemon]\nlog_level = "warning"\nlog_format = "console"\n'),
        encoding="utf-8",
    )
    before = len(daemon.text())
    daemon.process.send_signal(signal.SIGHUP)
    # Read as text: the lines after it are no longer JSON.
    wait_for(lambda: "reload_needs_restart" in daemon.text()[before:], "the reload's warning")
    drop(folder, "courses.csv", COURSES)
    wait_for(lambda: len(receipts(folder)) == 2, "the second batch sent")
    drop(folder, "notes.txt", b"not for upload")
    wait_for(lambda: errors(folder), "the intake failure")
    wait_for(lambda: "batch_failed" in daemon.text()[before:], "the batch_failed line")

    after = daemon.text()[before:].splitlines()
    assert not [line for line in after if "batch_sent" in line or "file_claimed" in line]
    [failed] = [line for line in after if "batch_failed" in line]
    assert not failed.startswith("{") and "[error" in failed, "a console line now"
    assert daemon.process.poll() is None
