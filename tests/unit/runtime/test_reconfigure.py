"""Tests of what a reload changes (daemon/runtime/reconfigure.py, and the scheduler's reload):
every key it can, the running value of a key that needs a restart, and the log settings."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from daemon.base.log import LogFormat, LogLevel
from daemon.config.keys import settings_of
from daemon.config.load import load_config
from daemon.config.model import SECTIONS, Config, DaemonSettings
from daemon.runtime.reconfigure import keep_restart_keys
from daemon.runtime.scheduler import Scheduler
from unit.clock import ManualClock


def config_text(tmp_path: Path, **daemon: str) -> str:
    settings = {"state_dir": f'"{tmp_path / "state"}"', "poll_seconds": "2", **daemon}
    return "[daemon]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items())


def test_the_state_dir_needs_a_restart_and_the_log_settings_do_not() -> None:
    marked = [
        f"{section.header}.{s.name}"
        for section in SECTIONS
        for s in settings_of(section.settings)
        if s.key.restart
    ]
    assert "daemon.state_dir" in marked
    assert not {"daemon.log_level", "daemon.log_format", "daemon.metrics_port"} & set(marked)


def test_keep_restart_keys_keeps_the_running_state_dir_and_takes_the_rest() -> None:
    old = Config(Path("/etc/dropd.toml"), DaemonSettings(state_dir=Path("/var/lib/dropd")))
    new = dataclasses.replace(
        old,
        daemon=DaemonSettings(
            state_dir=Path("/srv/state"), log_level=LogLevel.DEBUG, settle_seconds=1.0
        ),
    )
    applied, named = keep_restart_keys(old, new)
    assert named == ("daemon.state_dir",)
    assert applied.daemon == dataclasses.replace(new.daemon, state_dir=Path("/var/lib/dropd"))


def test_keep_restart_keys_names_nothing_when_no_such_key_changed() -> None:
    old = Config(Path("/etc/dropd.toml"))
    new = dataclasses.replace(old, daemon=DaemonSettings(log_format=LogFormat.CONSOLE))
    assert keep_restart_keys(old, new) == (new, ())


@pytest.fixture
def reloading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Scheduler, list[DaemonSettings]]]:
    """A scheduler with no group, and the log settings each reload handed on."""
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    (tmp_path / "state").mkdir()
    (tmp_path / "dropd.toml").write_text(config_text(tmp_path), encoding="utf-8")
    configured: list[DaemonSettings] = []
    made = Scheduler(
        load_config(tmp_path / "dropd.toml"), clock=ManualClock(), configure_log=configured.append
    )
    made.start()
    yield made, configured
    made.stopping = True
    made._shutdown()


def test_reload_hands_on_changed_log_settings(
    tmp_path: Path, reloading: tuple[Scheduler, list[DaemonSettings]]
) -> None:
    scheduler, configured = reloading
    text = config_text(tmp_path, log_level='"warning"', log_format='"console"')
    (tmp_path / "dropd.toml").write_text(text, encoding="utf-8")
    scheduler.reload()
    [settings] = configured
    assert (settings.log_level, settings.log_format) == (LogLevel.WARNING, LogFormat.CONSOLE)

    scheduler.reload()  # nothing changed: the log is left as it is
    assert len(configured) == 1


def test_reload_names_a_moved_state_dir_and_keeps_running_on_the_old_one(
    tmp_path: Path, reloading: tuple[Scheduler, list[DaemonSettings]]
) -> None:
    scheduler, _configured = reloading
    moved = tmp_path / "moved"
    text = config_text(tmp_path, state_dir=f'"{moved}"', settle_seconds="1")
    (tmp_path / "dropd.toml").write_text(text, encoding="utf-8")
    with structlog.testing.capture_logs() as logs:
        scheduler.reload()
    [reloaded] = [e for e in logs if e["event"] == "config_reloaded"]
    [warned] = [e for e in logs if e["event"] == "reload_needs_restart"]
    assert reloaded["restart_needed"] == warned["keys"] == ["daemon.state_dir"]
    assert warned["log_level"] == "warning"
    assert scheduler.config.daemon.state_dir == tmp_path / "state"
    assert scheduler.config.daemon.settle_seconds == 1.0, "the rest is applied"
