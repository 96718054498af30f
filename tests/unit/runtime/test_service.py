"""Tests of the scheduler's loop (daemon/runtime/scheduler.py): a wake-up visits the groups
that are due, not every group, and the pass over every group (status, metrics, STATUS=) is
rate-limited.

Polling groups (no watcher thread), a clock the test moves, and no upload.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.config.load import load_config
from daemon.intake.watch import FolderChanged
from daemon.observe.publishing import PUBLISH_SECONDS, QUIET_PUBLISH_SECONDS
from daemon.runtime.group import GroupWorker
from daemon.runtime.scheduler import STOP_GRACE_SECONDS, Scheduler
from unit.clock import ManualClock

POLL = 2.0
GROUPS = ("g0", "g1", "g2", "g3")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def scheduler(
    tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Scheduler]:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    lines = [
        f'[daemon]\nstate_dir = "{tmp_path / "state"}"\npoll_seconds = {POLL}\n',
        '[environments.test]\ntoken_url = "http://127.0.0.1:9/oauth/token"',
        'base_url = "http://127.0.0.1:9"\nclient_id = "unit-a"\nclient_secret_env = "S"\n',
    ]
    for key in GROUPS:
        (tmp_path / key).mkdir()
        lines.append(f'[groups.{key}]\nenvironment = "test"\nfolder = "{tmp_path / key}"\n')
    (tmp_path / "state").mkdir()
    (tmp_path / "dropd.toml").write_text("\n".join(lines), encoding="utf-8")
    made = Scheduler(load_config(tmp_path / "dropd.toml"), clock=clock)
    made.start()
    yield made
    made.stopping = True
    made._shutdown()


def count_scans(scheduler: Scheduler, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    scanned: list[str] = []
    for key, worker in scheduler.groups.items():

        def counted(
            now: float, daemon: object, key: str = key, worker: GroupWorker = worker
        ) -> None:
            scanned.append(key)
            GroupWorker.scan(worker, now, daemon)  # type: ignore[arg-type]

        monkeypatch.setattr(worker, "scan", counted)
    return scanned


def count_publishes(scheduler: Scheduler, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    published: list[float] = []
    write = scheduler.status.write

    def counted(*args: object) -> None:
        published.append(scheduler.clock())
        write(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(scheduler.status, "write", counted)
    return published


def test_scheduler_tick_visits_only_the_groups_that_are_due(
    scheduler: Scheduler, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    scanned = count_scans(scheduler, monkeypatch)
    scheduler._tick()  # the first tick visits every group once (start, reload)
    scanned.clear()

    clock.now += 0.5
    scheduler._tick()
    assert scanned == []

    scheduler._handle(FolderChanged("g2"))
    scheduler._tick()
    assert scanned == ["g2"]

    clock.now += POLL - 0.5  # the poll of the groups scanned at start
    scanned.clear()
    scheduler._tick()
    assert sorted(scanned) == ["g0", "g1", "g3"]  # g2's poll comes later: it was scanned later


def test_scheduler_next_deadline_is_the_earliest_group_deadline(
    scheduler: Scheduler, clock: ManualClock
) -> None:
    scheduler._tick()
    assert scheduler._next_deadline() == pytest.approx(clock.now + POLL)
    scheduler._handle(FolderChanged("g1"))
    assert scheduler._next_deadline() <= clock.now


def test_scheduler_publishes_at_most_every_publish_seconds_while_things_change(
    scheduler: Scheduler, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    scheduler._tick()
    published = count_publishes(scheduler, monkeypatch)
    start = clock.now
    folder = scheduler.groups["g0"].group.folder
    for step in range(5):
        (folder / f"f{step}.csv").write_bytes(b"user_id,login_id\n")  # files waiting: a change
        scheduler._handle(FolderChanged("g0"))
        clock.now += PUBLISH_SECONDS / 5
        scheduler._tick()
    assert published == [pytest.approx(start + PUBLISH_SECONDS)]

    (folder / "late.csv").write_bytes(b"user_id,login_id\n")
    scheduler._handle(FolderChanged("g0"))
    scheduler._tick()
    assert len(published) == 1  # not yet: the loop wakes for it PUBLISH_SECONDS after the last
    assert scheduler._next_deadline() == pytest.approx(published[0] + PUBLISH_SECONDS)


def test_scheduler_idle_visits_publish_only_every_quiet_publish_seconds(
    scheduler: Scheduler, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    scheduler._tick()
    published = count_publishes(scheduler, monkeypatch)
    start = clock.now
    while clock.now < start + QUIET_PUBLISH_SECONDS * 2.5:
        clock.now = scheduler._next_deadline()
        scheduler._tick()  # polls that find nothing new
    assert len(published) == 2


def test_scheduler_shutdown_waits_for_uploads_by_the_injected_clock(
    scheduler: Scheduler, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An upload that never ends: the stop waits STOP_GRACE_SECONDS of the scheduler's clock,
    # which here moves a minute at each look, so the wait ends at once in real time.
    looks: list[float] = []

    def minute_a_look() -> float:
        clock.now += 60.0
        looks.append(clock.now)
        return clock.now

    monkeypatch.setattr(scheduler, "clock", minute_a_look)
    monkeypatch.setattr(scheduler, "in_flight", lambda: ["20261123T085810.123456Z-3f9a"])
    started = time.monotonic()

    scheduler._shutdown()

    assert time.monotonic() - started < STOP_GRACE_SECONDS / 2
    assert len(looks) >= 2, "the deadline and the check against it read the injected clock"
