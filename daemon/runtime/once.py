"""`dropd run --once`: when the run is over, and how it went.

The run takes what the folders and their spools hold when it starts (a file still being
written is waited for until it settles), and any file that arrives while it still has work.
It is over once no group has anything left that it can do without a person: every batch it
took sent, failed or held, and no file left that could still be taken. A group that cannot
go on (its folder missing or in Error, no token to be had, a disk that refuses) is over at
once; its batches stay in the spool for the next run. An upload the server answers with a
retry keeps the run going until it is sent or gives up (`give_up_after_seconds`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from daemon.base.steps import Step
from daemon.config.model import DoneMarkers
from daemon.delivery.outcome import BatchResult, ResultKind
from daemon.runtime.group import GroupWorker

__all__ = ["GroupWork", "OnceOutcome", "OnceTally", "work_of"]

# A group in Error at one of these steps waits for a person: its line does not move on alone.
NEEDS_A_PERSON = frozenset({Step.FOLDER, Step.SPOOL, Step.TOKEN})


@dataclass(frozen=True, slots=True)
class GroupWork:
    """What a group has left to do, as the run sees it between two visits."""

    group: str
    batches: int  # open, in line or in flight
    files: int  # in the folder, not yet taken, that may still be taken
    in_flight: bool
    blocked: str | None = None  # why the group cannot go on without a person, if so

    @property
    def over(self) -> bool:
        """True when the group has nothing more this run can do."""
        if self.in_flight:
            return False
        return self.blocked is not None or (self.batches == 0 and self.files == 0)


def work_of(worker: GroupWorker, now: float, settle_seconds: float) -> GroupWork:
    """What `worker`'s group has left to do now."""
    line = worker.line
    tracker = worker.intake.tracker
    files = tracker.watched()
    still_written = tracker.next_settle_at(settle_seconds, after=now) is not None
    if worker.group.done_markers is DoneMarkers.REQUIRED and not still_written:
        files = 0  # what is left waits for a marker that may never come: not this run's
    return GroupWork(
        group=worker.group.key,
        batches=len(line.waiting) + (line.open is not None),
        files=files,
        in_flight=line.in_flight is not None,
        blocked=_blocked(worker),
    )


def _blocked(worker: GroupWorker) -> str | None:
    error = worker.health.error
    if not worker.owner:
        return error[1] if error else "another dropd holds the folder's lock"
    if error is not None and error[0] in NEEDS_A_PERSON:
        return error[1]
    if not worker.may_send():
        return "the folder needs a person"
    return None


@dataclass(frozen=True, slots=True)
class OnceOutcome:
    """How a run went: what became of the batches it took, and what it left."""

    sent: int
    failed: int
    held: int
    gone: int  # removed from the spool by someone else while in line
    batches_left: int  # still in the spool, for the next run (or for the daemon)
    files_left: int  # in the folders, not taken
    # The groups that could not go on without a person, each with why.
    blocked: tuple[tuple[str, str], ...]

    @property
    def taken(self) -> int:
        """Every batch the run took: recovered from a spool, or made of the files it took."""
        return self.sent + self.failed + self.held + self.gone + self.batches_left

    @property
    def exit_code(self) -> int:
        """0 when every batch it took was sent and nothing was left; else 1."""
        return 0 if self.sent == self.taken and not (self.files_left or self.blocked) else 1

    @property
    def summary(self) -> str:
        """The outcome in a sentence."""
        if not self.taken and not self.files_left and not self.blocked:
            return "nothing to send: no file in the folders and no batch in their spools"
        counts = [
            f"{figure} {word}"
            for figure, word in (
                (self.sent, "sent"),
                (self.failed, "failed"),
                (self.held, "held"),
                (self.gone, "removed by someone else"),
                (self.batches_left, "left in the spool for the next run"),
            )
            if figure
        ]
        said = []
        if self.taken:
            said.append(f"{self.taken} batch{'es' if self.taken != 1 else ''}: {', '.join(counts)}")
        if self.files_left:
            said.append(f"{self.files_left} file{'s' if self.files_left != 1 else ''} not taken")
        said += [f"{group} waits for a person: {why}" for group, why in self.blocked]
        return "; ".join(said)


@dataclass(slots=True)
class OnceTally:
    """Counts the results of the batches a run took, as they come."""

    sent: int = 0
    failed: int = 0
    held: int = 0
    gone: int = 0

    def record(self, result: BatchResult) -> None:
        """Count a batch's result; one that only waits is counted when the run ends."""
        if result.kind is ResultKind.SENT:
            self.sent += 1
        elif result.kind is ResultKind.FAILED:
            self.failed += 1
        elif result.kind is ResultKind.HELD:
            self.held += 1
        elif result.kind is ResultKind.GONE:
            self.gone += 1

    def outcome(self, work: Iterable[GroupWork]) -> OnceOutcome:
        """How the run went, with what each group has left now."""
        works = list(work)
        return OnceOutcome(
            sent=self.sent,
            failed=self.failed,
            held=self.held,
            gone=self.gone,
            batches_left=sum(w.batches for w in works),
            files_left=sum(w.files for w in works),
            blocked=tuple((w.group, w.blocked) for w in works if w.blocked is not None),
        )
