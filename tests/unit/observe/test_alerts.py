"""Tests of the alerts of [notify] (daemon/observe/alerts.py): what a message says, that a
group is told of an error once per change (not at every look, nor when it flaps), that the
sender never blocks and never stops for a failure, and that no URL reaches a log line. The
group's side, which decides when an error begins and ends, is tested here too
(daemon/runtime/health.py, group.py), as what it hands to the sender."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog

from daemon.base.steps import Step
from daemon.config.load import DEFAULT_CONFIG_PATH
from daemon.config.model import Config, NotifyEvent, NotifySettings, NotifyUrls, UrlsKind
from daemon.delivery.outcome import BatchResult, ResultKind
from daemon.observe.alerts import Alert, AlertSender, Repeats, Target, compose, send
from daemon.runtime.health import GroupHealth
from unit.workers import music_worker

# apprise's e-mail plugin imports the standard library's imghdr, deprecated in 3.11.
pytestmark = pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")

NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
BATCH = "20261203T095810.123456Z-3f9a"
CONFIG = Path("/srv/dropd/dropd.toml")
PASSWORD = "Relay-Pa55word"


def alert(event: NotifyEvent, step: str = "validate", **extra: Any) -> Alert:
    fields: dict[str, Any] = {
        "group": "music",
        "friendly_name": "Jacobs School of Music",
        "step": step,
        "reason": "users.csv line 1: the header lacks status",
        "batch": BATCH,
        **extra,
    }
    return Alert(event, **fields)


# --- what a message says ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "title", "command"),
    [
        (
            NotifyEvent.BATCH_FAILED,
            f"dropd: batch {BATCH} of music failed at step validate",
            f"dropd retry --config {CONFIG} music {BATCH}",
        ),
        (
            NotifyEvent.BATCH_HELD,
            f"dropd: batch {BATCH} of music held by the guard",
            f"dropd release --config {CONFIG} music {BATCH}",
        ),
        (
            NotifyEvent.GROUP_ERROR,
            "dropd: music needs a person (step validate)",
            f"dropd verify --config {CONFIG} music",
        ),
    ],
)
def test_a_message_names_group_batch_step_reason_and_the_command(
    event: NotifyEvent, title: str, command: str
) -> None:
    got_title, body = compose(alert(event, folder=Path("/srv/drop/music/failed") / BATCH), CONFIG)
    assert got_title == title
    assert "Group: music (Jacobs School of Music)" in body
    assert f"Batch: {BATCH}" in body and "Step: validate" in body
    assert "Reason: users.csv line 1: the header lacks status" in body
    assert f"  {command}" in body


def test_the_commands_leave_out_the_default_config() -> None:
    _, body = compose(alert(NotifyEvent.BATCH_FAILED), DEFAULT_CONFIG_PATH)
    assert f"  dropd retry music {BATCH}" in body and "--config" not in body


def test_a_recovery_says_the_group_is_fine_again_and_a_group_error_may_have_no_batch() -> None:
    title, body = compose(alert(NotifyEvent.GROUP_RECOVERED, "token", reason=""), CONFIG)
    assert title == "dropd: music is fine again (step token)"
    assert "Reason" not in body and "Nothing to do" in body
    _, body = compose(alert(NotifyEvent.GROUP_ERROR, "folder", batch=None), CONFIG)
    assert "Batch: none (the group as a whole)" in body


# --- repeats ---------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_flapping_group_error_is_told_once_an_hour_and_its_end_only_when_told() -> None:
    clock = Clock()
    repeats = Repeats(clock, seconds=3600)
    error, back = alert(NotifyEvent.GROUP_ERROR), alert(NotifyEvent.GROUP_RECOVERED)
    other = alert(NotifyEvent.GROUP_ERROR, reason="another reason")
    assert repeats.repeated(back)  # nothing told yet: a recovery is not news
    assert [repeats.repeated(a) for a in (error, back, error, back, other, back)] == [
        False,  # told
        False,  # its end, told
        True,  # the same error again within the hour
        True,  # and the end of what was not told
        False,  # a new reason is news
        False,
    ]
    clock.now += 3601
    assert not repeats.repeated(error)  # an hour on: told again
    assert not repeats.repeated(alert(NotifyEvent.BATCH_FAILED))  # batches: never repeats


# --- the sender --------------------------------------------------------------------------------


class Service:
    """Stands in for an apprise plugin: answers as told, notes what it was asked."""

    def __init__(self, answer: bool | Exception = True, gate: threading.Event | None = None):
        self.answer = answer
        self.gate = gate
        self.sent: list[dict[str, Any]] = []

    def notify(self, **message: Any) -> bool:
        if self.gate is not None:
            self.gate.wait(10)
        self.sent.append(message)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def target(service: Service, where: str = "notify.urls[0]") -> Target:
    url = f"mailto://dropd:{PASSWORD}@relay.example.edu?to=team@example.edu"
    return Target(where, "mailto", url, service)  # type: ignore[arg-type]


def sender_with(*targets: Target, on: tuple[NotifyEvent, ...] = tuple(NotifyEvent)) -> AlertSender:
    sender = AlertSender(queue_size=2)
    sender.targets, sender.events, sender.config_path = targets, frozenset(on), CONFIG
    return sender


def wait_until(condition: Callable[[], bool]) -> None:
    end = threading.Event()
    for _ in range(400):
        if condition():
            return
        end.wait(0.025)
    raise AssertionError("timed out")


def test_the_sender_sends_each_alert_through_every_target_in_its_thread() -> None:
    first, second = Service(), Service()
    sender = sender_with(target(first), target(second, "notify.urls[1]"))
    sender.start()
    with structlog.testing.capture_logs() as logs:
        sender.tell(alert(NotifyEvent.BATCH_FAILED))
        sender.stop()
    assert len(first.sent) == len(second.sent) == 1
    assert first.sent[0]["title"] == f"dropd: batch {BATCH} of music failed at step validate"
    assert [(e["event"], e["target"]) for e in logs] == [
        ("alert_sent", "notify.urls[0]"),
        ("alert_sent", "notify.urls[1]"),
    ]


def test_an_event_not_in_on_is_not_sent() -> None:
    service = Service()
    sender = sender_with(target(service), on=(NotifyEvent.BATCH_FAILED,))
    sender.tell(alert(NotifyEvent.BATCH_HELD))
    assert sender.queue.empty()


def test_a_failing_target_is_logged_without_its_url_and_the_others_still_sent() -> None:
    raising = Service(OSError(f"cannot log in as dropd:{PASSWORD} at relay.example.edu"))
    refusing, fine = Service(False), Service()
    sender = sender_with(target(raising), target(refusing, "x line 2"), target(fine, "x line 3"))
    sender.start()
    with structlog.testing.capture_logs() as logs:
        sender.tell(alert(NotifyEvent.BATCH_FAILED))
        sender.stop()
    assert [e["event"] for e in logs] == ["alert_failed", "alert_failed", "alert_sent"]
    assert logs[0]["reason"] == "OSError: cannot log in as [redacted]:[redacted] at [redacted]"
    assert logs[1]["reason"] == "apprise gave no reason"
    assert logs[0]["scheme"] == "mailto" and logs[0]["alert"] == "batch_failed"
    assert PASSWORD not in repr(logs) and "relay" not in repr(logs)
    assert sender.thread is not None and not sender.thread.is_alive()  # stopped, not crashed


def test_a_full_queue_drops_alerts_says_so_once_and_never_blocks() -> None:
    gate = threading.Event()
    service = Service(gate=gate)
    sender = sender_with(target(service))
    sender.start()
    with structlog.testing.capture_logs() as logs:
        failures = [alert(NotifyEvent.BATCH_FAILED, batch=f"b{n}") for n in range(6)]
        sender.tell(failures[0])
        wait_until(sender.queue.empty)  # the sender took it, and is stuck sending it
        for failure in failures[1:]:
            sender.tell(failure)  # 2 wait, 3 are dropped
        dropped = [e for e in logs if e["event"] == "alerts_dropped"]
        assert len(dropped) == 1 and dropped[0]["alert"] == "batch_failed"
        gate.set()
        sender.stop()
    assert len(service.sent) == 3


def test_configure_reads_the_urls_and_warns_of_a_file_others_can_read(tmp_path: Path) -> None:
    urls = tmp_path / "notify.urls"
    urls.write_text(f"json://127.0.0.1:9/a\nmailto://dropd:{PASSWORD}@relay.example.edu\n")
    urls.chmod(0o644)
    notify = NotifySettings(NotifyUrls(UrlsKind.FILE, value=str(urls)), (NotifyEvent.BATCH_HELD,))
    sender = AlertSender()
    with structlog.testing.capture_logs() as logs:
        sender.configure(Config(path=CONFIG, notify=notify))
    assert [t.where for t in sender.targets] == [f"{urls} line 1", f"{urls} line 2"]
    assert sender.events == {NotifyEvent.BATCH_HELD}
    warned, configured = logs
    assert warned["event"] == "notify_urls_readable_by_others" and warned["mode"] == "0o644"
    assert configured["event"] == "alerts_configured" and configured["urls"] == 2
    assert PASSWORD not in repr(logs)

    urls.unlink()  # a reload that cannot read them: nobody is told, said why, dropd goes on
    with structlog.testing.capture_logs() as logs:
        sender.configure(Config(path=CONFIG, notify=notify))
    assert sender.targets == () and logs[0]["event"] == "alerts_unavailable"
    sender.configure(Config(path=CONFIG))  # no [notify]
    assert sender.targets == () and sender.events == frozenset()


def test_send_tells_a_real_apprise_plugin_that_fails_without_leaking() -> None:
    import apprise

    url = "json://127.0.0.1:1/hook"  # nothing listens on port 1
    service = apprise.Apprise.instantiate(url)
    assert service is not None
    with structlog.testing.capture_logs() as logs:
        sent = send(
            Target("notify.urls[0]", "json", url, service), alert(NotifyEvent.BATCH_HELD), "t", "b"
        )
    assert not sent and logs[0]["event"] == "alert_failed"
    assert "127.0.0.1:1" not in repr(logs) and "/hook" not in repr(logs)


# --- when a group tells ------------------------------------------------------------------------


def told_health() -> tuple[GroupHealth, list[tuple[NotifyEvent, str, str]]]:
    told: list[tuple[NotifyEvent, str, str]] = []
    health = GroupHealth("music", tell=lambda *said: told.append(said))
    return health, told


def test_a_group_error_is_told_once_per_change_not_at_every_look() -> None:
    health, told = told_health()
    for _ in range(3):
        health.set_error(Step.FOLDER, "the folder is gone")
    health.set_error(Step.FOLDER, "the folder is a link")
    assert health.recovered(Step.FOLDER)
    assert not health.recovered(Step.FOLDER)
    assert told == [
        (NotifyEvent.GROUP_ERROR, "folder", "the folder is gone"),
        (NotifyEvent.GROUP_ERROR, "folder", "the folder is a link"),
        (NotifyEvent.GROUP_RECOVERED, "folder", ""),
    ]


def test_a_batch_waiting_for_a_person_is_a_group_error_and_a_sent_batch_its_end() -> None:
    health, told = told_health()
    refused = BatchResult(ResultKind.WAIT, Step.TOKEN, "the token server refused the secret")
    with structlog.testing.capture_logs() as logs:
        health.record(refused, NOW)
        health.record(refused, NOW)  # each retry: not news
        health.record(BatchResult(ResultKind.RETRY, Step.UPLOAD, "HTTP 503"), NOW)
        health.record(BatchResult(ResultKind.SENT), NOW)
    assert told == [
        (NotifyEvent.GROUP_ERROR, "token", "the token server refused the secret"),
        (NotifyEvent.GROUP_RECOVERED, "token", ""),
    ]
    assert [e["event"] for e in logs] == ["group_error", "group_recovered"]


def test_a_failed_or_held_batch_is_not_a_group_error() -> None:
    health, told = told_health()
    health.record(BatchResult(ResultKind.FAILED, Step.VALIDATE, "bad header"), NOW)
    health.record(BatchResult(ResultKind.HELD, Step.GUARD, "too many deleted"), NOW)
    health.record(BatchResult(ResultKind.SENT), NOW)
    assert told == []


def test_a_group_hands_its_failed_and_held_batches_to_the_sender(tmp_path: Path) -> None:
    worker = music_worker(tmp_path, NOW)
    alerts: list[Alert] = []
    worker.report_alerts_to(alerts.append)
    failed = tmp_path / "failed" / BATCH
    worker.record(BatchResult(ResultKind.FAILED, Step.VALIDATE, "bad", destination=failed), NOW)
    worker.record(BatchResult(ResultKind.RETRY, Step.UPLOAD, "HTTP 503"), NOW)
    worker.health.set_error(Step.FOLDER, "the folder is gone")
    assert alerts == [
        Alert(NotifyEvent.BATCH_FAILED, "music", "music", "validate", "bad", BATCH, failed),
        Alert(NotifyEvent.GROUP_ERROR, "music", "music", "folder", "the folder is gone"),
    ]
