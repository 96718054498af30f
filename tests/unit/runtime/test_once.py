"""Tests of `dropd run --once`'s decisions (daemon/runtime/once.py): when a group has nothing
left this run can do, and the exit code and summary of how the run went."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from daemon.base.steps import Step
from daemon.config.model import DaemonSettings
from daemon.delivery.outcome import BatchResult, ResultKind
from daemon.runtime.group import GroupWorker
from daemon.runtime.once import GroupWork, OnceTally, work_of
from unit.workers import music_worker

MOMENT = datetime(2026, 11, 23, 8, 58, 10, tzinfo=UTC)
USERS = b"user_id,login_id,first_name,last_name,email,status\n"
SETTLE = 10.0


def owned_worker(tmp_path: Path, markers: str = "auto") -> GroupWorker:
    worker = music_worker(tmp_path, MOMENT, markers)
    assert worker.lease.take(0.0)
    return worker


@pytest.mark.parametrize(
    ("work", "over"),
    [
        (GroupWork("music", batches=0, files=0, in_flight=False), True),
        (GroupWork("music", batches=1, files=0, in_flight=False), False),
        (GroupWork("music", batches=0, files=2, in_flight=False), False),
        (GroupWork("music", batches=1, files=0, in_flight=True), False),
        (GroupWork("music", batches=1, files=0, in_flight=False, blocked="no token"), True),
        # An upload under way ends first, whatever else is wrong.
        (GroupWork("music", batches=1, files=0, in_flight=True, blocked="no token"), False),
    ],
)
def test_group_work_is_over_when_nothing_is_left_or_only_a_person_can_go_on(
    work: GroupWork, over: bool
) -> None:
    assert work.over is over


def test_work_of_counts_a_file_settling_then_its_open_batch(tmp_path: Path) -> None:
    worker = owned_worker(tmp_path)
    (worker.group.folder / "users.csv").write_bytes(USERS)
    worker.scan(0.0, DaemonSettings(settle_seconds=SETTLE))
    assert work_of(worker, 0.0, SETTLE) == GroupWork("music", 0, 1, False)

    worker.scan(SETTLE, DaemonSettings(settle_seconds=SETTLE))
    assert work_of(worker, SETTLE, SETTLE) == GroupWork("music", 1, 0, False)


def test_work_of_leaves_a_settled_file_that_waits_for_a_required_marker(tmp_path: Path) -> None:
    worker = owned_worker(tmp_path, markers="required")
    (worker.group.folder / "users.csv").write_bytes(USERS)
    worker.scan(0.0, DaemonSettings(settle_seconds=SETTLE))
    assert work_of(worker, 1.0, SETTLE).files == 1, "still being written, perhaps"

    worker.scan(SETTLE + 1, DaemonSettings(settle_seconds=SETTLE))
    work = work_of(worker, SETTLE + 1, SETTLE)
    assert (work.files, work.batches, work.over) == (0, 0, True)


def test_work_of_a_group_whose_folder_is_missing_is_blocked(tmp_path: Path) -> None:
    worker = music_worker(tmp_path, MOMENT)
    worker.group.folder.rmdir()
    worker.take_ownership(0.0, None)
    work = work_of(worker, 0.0, SETTLE)
    assert work.blocked is not None and "does not exist" in work.blocked
    assert work.over


def test_work_of_a_group_waiting_for_a_token_is_blocked(tmp_path: Path) -> None:
    worker = owned_worker(tmp_path)
    worker.health.record(BatchResult(ResultKind.WAIT, Step.TOKEN, "client rejected"), MOMENT)
    assert work_of(worker, 0.0, SETTLE).blocked == "client rejected"


def test_work_of_a_past_failure_does_not_block(tmp_path: Path) -> None:
    worker = owned_worker(tmp_path)
    worker.health.record(BatchResult(ResultKind.FAILED, Step.VALIDATE, "bad header"), MOMENT)
    assert work_of(worker, 0.0, SETTLE).blocked is None


def tally(*kinds: ResultKind) -> OnceTally:
    counted = OnceTally()
    for kind in kinds:
        counted.record(BatchResult(kind, None if kind is ResultKind.SENT else Step.UPLOAD, "why"))
    return counted


def test_once_outcome_all_sent_exits_0() -> None:
    outcome = tally(ResultKind.SENT, ResultKind.RETRY, ResultKind.SENT).outcome([])
    assert (outcome.taken, outcome.exit_code) == (2, 0)
    assert outcome.summary == "2 batches: 2 sent"


@pytest.mark.parametrize("kind", [ResultKind.FAILED, ResultKind.HELD, ResultKind.GONE])
def test_once_outcome_a_batch_not_sent_exits_1(kind: ResultKind) -> None:
    outcome = tally(ResultKind.SENT, kind).outcome([])
    assert (outcome.taken, outcome.exit_code) == (2, 1)


def test_once_outcome_what_is_left_exits_1_and_is_said() -> None:
    left = [
        GroupWork("music", batches=1, files=0, in_flight=False, blocked="no token"),
        GroupWork("art", batches=0, files=2, in_flight=False),
    ]
    outcome = tally(ResultKind.SENT).outcome(left)
    assert (outcome.batches_left, outcome.files_left, outcome.exit_code) == (1, 2, 1)
    assert outcome.blocked == (("music", "no token"),)
    assert outcome.summary == (
        "2 batches: 1 sent, 1 left in the spool for the next run; 2 files not taken; "
        "music waits for a person: no token"
    )


def test_once_outcome_of_nothing_exits_0_saying_so() -> None:
    outcome = OnceTally().outcome([GroupWork("music", 0, 0, False)])
    assert outcome.exit_code == 0
    assert outcome.summary.startswith("nothing to send")


def test_once_outcome_of_a_blocked_group_alone_exits_1() -> None:
    outcome = OnceTally().outcome([GroupWork("music", 0, 0, False, blocked="folder missing")])
    assert outcome.exit_code == 1
    assert outcome.summary == "music waits for a person: folder missing"
