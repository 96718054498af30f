"""Tests of the systemd notifications (daemon/runtime/notify.py) without a socket."""

from __future__ import annotations

from daemon.runtime.notify import Notifier


def test_notifier_times_the_watchdog_by_the_clock_it_is_given() -> None:
    now = [100.0]
    notifier = Notifier({"WATCHDOG_USEC": "10000000"}, clock=lambda: now[0])
    notifier.ready("0 groups")
    assert notifier.next_heartbeat() == 105.0  # half the watchdog's interval

    now[0] = 106.0
    notifier.heartbeat(healthy=True, status="0 groups")
    assert notifier.next_heartbeat() == 111.0


def test_notifier_without_a_watchdog_wants_no_heartbeat() -> None:
    assert Notifier({}, clock=lambda: 0.0).next_heartbeat() is None
