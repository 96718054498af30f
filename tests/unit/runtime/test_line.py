"""Tests of the per-group batch decisions and the retry backoff (daemon/runtime/line.py)."""

from __future__ import annotations

import random

import pytest

from daemon.runtime.line import Backoff, BatchTiming, GroupLine, OpenBatch

TIMING = BatchTiming(quiet_seconds=30.0, max_wait_seconds=300.0)


def line_with_open(batch_id: str = "b1", at: float = 0.0) -> GroupLine:
    """A line whose open batch was started at `at`, as the scheduler starts one."""
    return GroupLine(open=OpenBatch(batch_id, at, at))


def line_waiting(*batch_ids: str) -> GroupLine:
    line = GroupLine()
    for batch_id in batch_ids:
        line.open = OpenBatch(batch_id, 0.0, 0.0)
        line.close_open()
    return line


# -- the open batch -------------------------------------------------------------------------


def test_group_line_takes_nothing_without_an_open_batch() -> None:
    assert not GroupLine().takes("users.csv")


def test_group_line_takes_new_names_but_not_a_repeated_one() -> None:
    line = line_with_open()
    assert line.takes("users.csv")
    line.add("users.csv", 1.0)
    assert not line.takes("users.csv")
    assert line.takes("courses.csv")
    assert line.open is not None
    assert line.open.names == {"users.csv"}


def test_group_line_add_moves_the_quiet_window() -> None:
    line = line_with_open(at=0.0)
    line.add("users.csv", 0.0)
    line.add("courses.csv", 20.0)
    assert line.open is not None
    assert line.open.first_at == 0.0
    assert line.open.last_at == 20.0
    assert line.open.closes_at(TIMING) == 50.0


def test_group_line_due_waits_for_the_quiet_window() -> None:
    line = line_with_open(at=0.0)
    line.add("users.csv", 0.0)
    assert not line.due(29.9, TIMING)
    assert line.due(30.0, TIMING)


def test_group_line_due_after_max_wait_despite_arrivals() -> None:
    line = line_with_open(at=0.0)
    for second in range(0, 300, 20):
        line.add(f"file{second}.csv", float(second))
        assert not line.due(float(second), TIMING)
    assert line.open is not None
    assert line.open.closes_at(TIMING) == 300.0
    assert not line.due(299.9, TIMING)
    assert line.due(300.0, TIMING)


def test_group_line_due_not_before_a_refused_close() -> None:
    line = line_with_open(at=0.0)
    assert line.open is not None
    line.open.not_before = 100.0
    assert not line.due(99.0, TIMING)
    assert line.due(100.0, TIMING)


def test_group_line_due_without_open_batch_is_false() -> None:
    assert not GroupLine().due(1e9, TIMING)


def test_group_line_close_open_puts_the_batch_at_the_back() -> None:
    line = line_waiting("b1")
    line.open = OpenBatch("b2", 5.0, 5.0)
    assert line.close_open() == "b2"
    assert line.close_open() is None
    assert list(line.waiting) == ["b1", "b2"]


# -- the line -------------------------------------------------------------------------------


def test_group_line_sends_one_at_a_time_in_order() -> None:
    line = line_waiting("b1", "b2", "b3")
    sent: list[str] = []
    for _ in range(3):
        batch_id = line.next_to_send(0.0)
        assert batch_id is not None
        line.start(batch_id)
        assert line.in_flight == batch_id
        assert line.next_to_send(0.0) is None  # one in flight at a time
        line.finish(batch_id)
        sent.append(batch_id)
    assert sent == ["b1", "b2", "b3"]
    assert line.next_to_send(0.0) is None
    assert list(line.waiting) == []


def test_group_line_retry_later_holds_the_head_until_not_before() -> None:
    line = line_waiting("b1", "b2")
    line.start("b1")
    line.retry_later(100.0)

    assert line.in_flight is None
    assert line.next_to_send(99.9) is None
    assert line.next_to_send(100.0) == "b1"  # the same batch again, not the next one
    assert list(line.waiting) == ["b1", "b2"]


def test_group_line_finish_after_retry_clears_the_wait() -> None:
    line = line_waiting("b1", "b2")
    line.start("b1")
    line.retry_later(100.0)
    line.start("b1")
    line.finish("b1")
    assert line.not_before == 0.0
    assert line.next_to_send(1.0) == "b2"


def test_group_line_finish_of_another_batch_keeps_the_head() -> None:
    line = line_waiting("b1", "b2")
    line.finish("b2")
    assert list(line.waiting) == ["b1", "b2"]


def test_group_line_start_only_the_head() -> None:
    line = line_waiting("b1", "b2")
    with pytest.raises(AssertionError):
        line.start("b2")


def test_group_line_next_deadline() -> None:
    line = GroupLine()
    assert line.next_deadline(TIMING) is None

    line.open = OpenBatch("b1", 10.0, 10.0)
    assert line.next_deadline(TIMING) == 40.0

    line.close_open()
    line.start("b1")
    assert line.next_deadline(TIMING) is None  # in flight: its end is the next event

    line.retry_later(500.0)
    assert line.next_deadline(TIMING) == 500.0

    line.open = OpenBatch("b2", 400.0, 400.0)
    assert line.next_deadline(TIMING) == 430.0


# -- Backoff --------------------------------------------------------------------------------


def test_backoff_delay_grows_exponentially_within_bounds() -> None:
    backoff = Backoff(initial=5.0, maximum=900.0)
    rng = random.Random(7)
    for attempt in range(1, 40):
        ceiling = min(900.0, 5.0 * 2 ** (attempt - 1))
        delay = backoff.delay(attempt, rng)
        assert ceiling / 2 <= delay <= ceiling
        assert 2.5 <= delay <= 900.0


def test_backoff_delay_grows_on_average() -> None:
    backoff = Backoff(initial=1.0, maximum=10_000.0)
    rng = random.Random(1)
    means = [sum(backoff.delay(a, rng) for _ in range(50)) / 50 for a in range(1, 8)]
    assert means == sorted(means)
    assert means[-1] > 30 * means[0]


def test_backoff_delay_is_jittered() -> None:
    backoff = Backoff(initial=5.0, maximum=900.0)
    rng = random.Random(3)
    assert len({backoff.delay(4, rng) for _ in range(20)}) > 1


def test_backoff_delay_is_deterministic_with_a_seeded_rng() -> None:
    backoff = Backoff(initial=5.0, maximum=900.0)
    first = [backoff.delay(a, random.Random(42)) for a in range(1, 12)]
    second = [backoff.delay(a, random.Random(42)) for a in range(1, 12)]
    assert first == second


def test_backoff_delay_attempt_zero_is_like_the_first() -> None:
    backoff = Backoff(initial=5.0, maximum=900.0)
    assert 2.5 <= backoff.delay(0, random.Random(0)) <= 5.0


def test_backoff_delay_retry_after_is_a_floor() -> None:
    backoff = Backoff(initial=5.0, maximum=900.0)
    assert backoff.delay(1, random.Random(0), retry_after=120.0) == 120.0
    # A later jittered delay is kept: Retry-After is a floor, not a ceiling.
    assert backoff.delay(12, random.Random(0), retry_after=1.0) >= 450.0


def test_backoff_delay_retry_after_beyond_maximum_is_honoured() -> None:
    backoff = Backoff(initial=5.0, maximum=900.0)
    assert backoff.delay(1, random.Random(0), retry_after=3600.0) == 3600.0


def test_backoff_delay_survives_a_very_long_outage() -> None:
    # Token and spool waits retry without end (never failing a batch): the attempts keep growing;
    # with retry_max_seconds = 5, attempt 1025 comes after about an hour and a half.
    backoff = Backoff(initial=5.0, maximum=900.0)
    rng = random.Random(0)
    for attempt in (1024, 1025, 5000):
        assert 450.0 <= backoff.delay(attempt, rng) <= 900.0
