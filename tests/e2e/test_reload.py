"""SIGHUP: groups added and removed, a bad config refused, fixed credentials retried at once."""

from __future__ import annotations

import signal
from pathlib import Path

from harness import (
    USERS,
    DaemonProcess,
    SandboxProcess,
    drop,
    group_status,
    read,
    receipts,
    sandbox_environment,
    start_daemon,
    toml_config,
    wait_for,
    write_secret,
)


def folders(tmp_path: Path, *names: str) -> dict[str, Path]:
    made = {name: tmp_path / "drop" / name for name in names}
    for folder in made.values():
        folder.mkdir(parents=True, exist_ok=True)
    return made


def test_reload_adds_and_removes_groups(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    drops = folders(tmp_path, "music", "art")
    env = {
        "test": sandbox_environment(
            sandbox, "unit-a", write_secret(tmp_path / "s", "secret-a-1234")
        )
    }
    config = toml_config(
        tmp_path, env, {"music": {"environment": "test", "folder": str(drops["music"])}}
    )
    daemon = start_daemon(config, tmp_path / "daemon.log")
    processes.append(daemon)
    daemon.wait_event("daemon_ready")

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
    drops = folders(tmp_path, "music")
    env = {
        "test": sandbox_environment(
            sandbox, "unit-a", write_secret(tmp_path / "s", "secret-a-1234")
        )
    }
    config = toml_config(
        tmp_path, env, {"music": {"environment": "test", "folder": str(drops["music"])}}
    )
    daemon = start_daemon(config, tmp_path / "daemon.log")
    processes.append(daemon)
    daemon.wait_event("daemon_ready")

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
    drops = folders(tmp_path, "music")
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
    status = wait_for(
        lambda: (s := group_status(tmp_path / "state", "music")) and s["status"] == "Error" and s,
        "status Error at step token",
    )
    assert status["step"] == "token"
    assert not receipts(drops["music"]) and not list((drops["music"] / "failed").glob("*"))

    write_secret(secret, "secret-a-1234")
    daemon.process.send_signal(signal.SIGHUP)
    [receipt] = wait_for(lambda: receipts(drops["music"]), "the batch sent after the reload")
    assert read(receipt)["status"] == 200
    assert "wrong-secret-0000" not in daemon.text() and "secret-a-1234" not in daemon.text()
