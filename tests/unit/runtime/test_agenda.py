"""Tests of when each group next needs the scheduler (daemon/runtime/agenda.py)."""

from __future__ import annotations

from daemon.runtime.agenda import NOW, Agenda


def test_agenda_due_gives_the_keys_whose_time_came_earliest_first() -> None:
    agenda = Agenda()
    agenda.schedule("b", 20.0)
    agenda.schedule("a", 10.0)
    agenda.schedule("c", 30.0)

    assert agenda.next_at() == 10.0
    assert agenda.due(25.0) == ["a", "b"]
    assert agenda.due(25.0) == []
    assert agenda.next_at() == 30.0
    assert len(agenda) == 1


def test_agenda_keeps_the_earliest_time_a_key_asked_for() -> None:
    agenda = Agenda()
    agenda.schedule("a", 10.0)
    agenda.schedule("a", 50.0)  # later: the visit at 10 asks again
    assert agenda.next_at() == 10.0
    agenda.schedule("a", 5.0)  # earlier: wins
    assert agenda.next_at() == 5.0

    assert agenda.due(5.0) == ["a"]
    assert agenda.due(100.0) == []  # the superseded 10.0 is no visit of its own
    assert agenda.next_at() is None


def test_agenda_now_is_due_at_any_clock() -> None:
    agenda = Agenda()
    agenda.schedule("a", 100.0)
    agenda.schedule("a", NOW)
    assert agenda.due(-1e9) == ["a"]


def test_agenda_none_schedules_nothing_and_forget_drops_a_key() -> None:
    agenda = Agenda()
    agenda.schedule("a", None)
    agenda.schedule("b", 1.0)
    agenda.forget("b")
    assert agenda.due(10.0) == []
    assert agenda.next_at() is None


def test_agenda_stays_small_when_keys_ask_earlier_again_and_again() -> None:
    agenda = Agenda()
    for step in range(10_000):
        agenda.schedule(f"g{step % 10}", 1e6 - step)
    assert len(agenda) == 10
    assert len(agenda._heap) <= 4 * 10 + 64
    assert agenda.due(1e6) == [f"g{n}" for n in range(9, -1, -1)]


def test_agenda_a_key_visited_then_scheduled_again_is_due_once_more() -> None:
    agenda = Agenda()
    agenda.schedule("a", 1.0)
    assert agenda.due(1.0) == ["a"]
    agenda.schedule("a", 61.0)
    assert agenda.due(60.9) == []
    assert agenda.due(61.0) == ["a"]
