"""Telling people ([notify]): one message per event through every apprise URL, each naming
the group, the batch, the step, the reason and the command to run next.

apprise is synchronous and a mail relay may take its time, so the scheduler only puts an
`Alert` in a bounded queue and one sender thread of this module's does the sending. Nothing
here can stop dropd: a message that cannot be sent is logged (`alert_failed`), a full queue
drops the newest (`alerts_dropped`, said once until it drains). No URL reaches a log line or
an exception: a target is named by its place in the config and its scheme only.
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import apprise
import structlog

from daemon.base.errors import ConfigError
from daemon.base.log import REDACTOR
from daemon.config.load import config_option
from daemon.config.model import Config, NotifyEvent
from daemon.config.notify_urls import (
    UrlList,
    apprise_reason,
    blank_url,
    new_asset,
    password_of,
    read_urls,
    scheme_of,
    with_sender,
)

__all__ = [
    "QUEUE_SIZE",
    "REPEAT_SECONDS",
    "Alert",
    "AlertSender",
    "Repeats",
    "Target",
    "compose",
    "send_test",
]

log = structlog.get_logger()

QUEUE_SIZE = 100  # alerts waiting to be sent; more are dropped (a relay down for long)
REPEAT_SECONDS = 3600.0  # the same group_error again within this long is not sent again
STOP_GRACE_SECONDS = 10.0  # how long a stopping dropd lets the sender finish what waits
# How each event looks where the service shows a kind (a colour, an icon, JSON's "type").
_KINDS = {
    NotifyEvent.BATCH_FAILED: apprise.NotifyType.FAILURE,
    NotifyEvent.BATCH_HELD: apprise.NotifyType.WARNING,
    NotifyEvent.GROUP_ERROR: apprise.NotifyType.FAILURE,
    NotifyEvent.GROUP_RECOVERED: apprise.NotifyType.SUCCESS,
}


@dataclass(frozen=True, slots=True)
class Alert:
    """Something to tell people of a group, as the scheduler saw it."""

    event: NotifyEvent
    group: str  # the group's key
    friendly_name: str
    step: str
    reason: str
    batch: str | None = None  # the batch it is about, if one
    folder: Path | None = None  # where the batch's files are now: failed/BATCH, held/BATCH


@dataclass(frozen=True, slots=True)
class Target:
    """One apprise URL, ready to send, and how logs name it (never by the URL)."""

    where: str  # notify.urls[0], or FILE line 3
    scheme: str  # mailto
    url: str  # only to blank apprise's sentences of it
    service: apprise.plugins.NotifyBase


def compose(alert: Alert, config_path: Path) -> tuple[str, str]:
    """The title and body of the message for `alert`."""
    group = alert.group
    named = group if alert.friendly_name == group else f"{group} ({alert.friendly_name})"
    option = config_option(config_path)
    batch = alert.batch or "none (the group as a whole)"
    if alert.event is NotifyEvent.BATCH_FAILED:
        title = f"dropd: batch {alert.batch} of {group} failed at step {alert.step}"
        where = f"Its files and error.json are in {alert.folder}. " if alert.folder else ""
        advice = (
            f"{where}Fix what the reason says (a file is fixed in place there), then put it "
            f"back in line:\n  dropd retry{option} {group} {alert.batch}"
        )
    elif alert.event is NotifyEvent.BATCH_HELD:
        title = f"dropd: batch {alert.batch} of {group} held by the guard"
        where = f"Its files and held.json are in {alert.folder}. " if alert.folder else ""
        advice = (
            f"{where}If the deletions are meant, send it as it is:\n"
            f"  dropd release{option} {group} {alert.batch}\n"
            "Otherwise remove that folder and drop a corrected export."
        )
    elif alert.event is NotifyEvent.GROUP_ERROR:
        title = f"dropd: {group} needs a person (step {alert.step})"
        advice = (
            "Its batches wait and nothing is lost. Check the group step by step:\n"
            f"  dropd verify{option} {group}"
        )
    else:
        title = f"dropd: {group} is fine again (step {alert.step})"
        advice = "The problem at that step is over; its batches go on. Nothing to do."
    lines = [f"Group: {named}", f"Batch: {batch}", f"Step: {alert.step}"]
    if alert.reason:
        lines.append(f"Reason: {alert.reason}")
    return title, "\n".join([*lines, "", advice])


class Repeats:
    """Which group alerts are repeats: a group whose error comes and goes (or flips between
    two reasons) is told of each error once an hour, not at every change, and of its
    recovery only when it was told of the error."""

    def __init__(self, clock: Callable[[], float], seconds: float = REPEAT_SECONDS) -> None:
        self.clock = clock
        self.seconds = seconds
        self.sent: dict[tuple[str, str, str], float] = {}  # (group, step, reason) -> when
        self.open: set[str] = set()  # groups told of an error and not yet of its end

    def repeated(self, alert: Alert) -> bool:
        """True when `alert` should not be sent; else notes it as sent now."""
        if alert.event is NotifyEvent.GROUP_RECOVERED:
            if alert.group not in self.open:
                return True
            self.open.discard(alert.group)
            return False
        if alert.event is not NotifyEvent.GROUP_ERROR:
            return False
        now = self.clock()
        self.sent = {key: at for key, at in self.sent.items() if now - at < self.seconds}
        key = (alert.group, alert.step, alert.reason)
        if key in self.sent:
            return True
        self.sent[key] = now
        self.open.add(alert.group)
        return False


class AlertSender:
    """The queue of alerts and the thread that sends them through apprise."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, queue_size: int = QUEUE_SIZE
    ) -> None:
        self.queue: queue.Queue[tuple[Alert, tuple[Target, ...], str, str] | None]
        self.queue = queue.Queue(maxsize=queue_size)
        self.repeats = Repeats(clock)
        self.targets: tuple[Target, ...] = ()
        self.events: frozenset[NotifyEvent] = frozenset()
        self.config_path = Path()
        self.dropping = False  # alerts_dropped was said, and the queue has not drained since
        self.thread: threading.Thread | None = None

    def configure(self, config: Config) -> None:
        """Take [notify] as `config` has it (at start and at each reload): read its URLs.

        URLs that cannot be read (a file gone, a credential missing) are logged as
        alerts_unavailable and nobody is told until a reload fixes them; dropd goes on.
        """
        self.config_path = config.path
        notify = config.notify
        if notify is None:
            self.targets, self.events = (), frozenset()
            return
        try:
            found = read_urls(notify)
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("alerts_unavailable", problem=problem)
            self.targets, self.events = (), frozenset()
            return
        if found.open_to_others:
            log.warning(
                "notify_urls_readable_by_others",
                path=str(found.path),
                mode=found.open_to_others,
                fix=f"chmod 600 {found.path}",
            )
        for url in found.urls:  # a second net, should a URL reach a log line all the same
            REDACTOR.add(url)
            if (password := password_of(url)) is not None:
                REDACTOR.add(password)
        self.targets = _targets(found)
        self.events = frozenset(notify.on)
        log.info(
            "alerts_configured",
            urls=len(self.targets),
            schemes=sorted({target.scheme for target in self.targets}),
            on=[str(event) for event in notify.on],
        )

    def start(self) -> None:
        """Start the sender thread (once)."""
        if self.thread is None:
            self.thread = threading.Thread(target=self._send_all, name="alerts", daemon=True)
            self.thread.start()

    def tell(self, alert: Alert) -> None:
        """Send `alert` in the background if [notify] wants its event; never blocks."""
        if alert.event not in self.events or not self.targets or self.repeats.repeated(alert):
            return
        title, body = compose(alert, self.config_path)
        try:
            self.queue.put_nowait((alert, self.targets, title, body))
        except queue.Full:
            if not self.dropping:
                log.warning(
                    "alerts_dropped",
                    alert=str(alert.event),
                    group=alert.group,
                    waiting=self.queue.qsize(),
                    reason="the alerts waiting to be sent fill the queue; the sending is slow "
                    "or failing (see alert_failed)",
                )
            self.dropping = True
            return
        if self.queue.qsize() <= 1:
            self.dropping = False

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """Let the sender finish what waits, for `grace` seconds at most, then leave it."""
        if self.thread is None:
            return
        try:
            self.queue.put(None, timeout=grace)
        except queue.Full:
            return
        self.thread.join(grace)

    def _send_all(self) -> None:
        while (item := self.queue.get()) is not None:
            alert, targets, title, body = item
            for target in targets:
                try:
                    send(target, alert, title, body)
                except Exception:  # a bug of dropd's must not end the sending for good
                    log.exception("alert_crashed", alert=str(alert.event), target=target.where)


def send(target: Target, alert: Alert, title: str, body: str) -> bool:
    """Send one message through one target; log how it went. True if it was sent."""
    fields = {"alert": str(alert.event), "group": alert.group, "batch": alert.batch}
    failure = _deliver(target, title, body, _KINDS[alert.event])
    if failure is None:
        log.info("alert_sent", **fields, target=target.where, scheme=target.scheme)
        return True
    log.warning("alert_failed", **fields, target=target.where, scheme=target.scheme, reason=failure)
    return False


def send_test(found: UrlList) -> list[tuple[Target, str | None]]:
    """`dropd verify --send-test`: one test message through each URL, now, in this thread;
    each target with why it failed (blanked of the URL), or None where it was sent."""
    title = "dropd: a test message"
    body = (
        f"dropd on {socket.gethostname()} sends its alerts here: failed and held batches, and "
        "groups that need a person or are fine again. Nothing is wrong; `dropd verify "
        "--send-test` sent this."
    )
    return [
        (target, _deliver(target, title, body, apprise.NotifyType.INFO))
        for target in _targets(found)
    ]


def _deliver(target: Target, title: str, body: str, kind: apprise.NotifyType) -> str | None:
    """Send through `target`: None when it went, else why not, blanked of the URL."""
    with apprise_reason(target.url) as said:
        try:
            sent = bool(
                target.service.notify(
                    body=body,
                    title=title,
                    notify_type=kind,
                    body_format=apprise.NotifyFormat.TEXT,  # its lines and indents kept
                )
            )
        except Exception as exc:  # apprise's plugins raise what their libraries raise
            return blank_url(f"{type(exc).__name__}: {exc}", target.url)
    if sent:
        return None
    return "; ".join(said) or "apprise gave no reason"


def _targets(found: UrlList) -> tuple[Target, ...]:
    targets = []
    for where, url in zip(found.where, found.urls, strict=True):
        with apprise_reason(url):
            service = apprise.Apprise.instantiate(with_sender(url), asset=new_asset())
        if service is not None:  # read_urls checked each: apprise took it then
            targets.append(Target(where, scheme_of(url), url, service))
    return tuple(targets)
