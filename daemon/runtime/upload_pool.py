"""The upload pool: a few threads, one batch per group at a time. A finished upload only posts
`Finished` to the scheduler's queue; the scheduler hands it back here, on its own thread, to
take the batch out of the group's line or make the line wait (backoff with jitter).
"""

from __future__ import annotations

import queue
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

import structlog

from daemon.base.errors import DropdError
from daemon.base.steps import Step
from daemon.delivery.deliver import deliver
from daemon.delivery.outcome import BatchResult, ResultKind
from daemon.runtime.group import GroupWorker
from daemon.runtime.line import Backoff

log = structlog.get_logger()

UPLOAD_THREADS = 8


@dataclass(frozen=True, slots=True)
class Finished:
    worker: GroupWorker  # not its key: a reload may have put a new worker under that key
    batch_id: str
    result: BatchResult


class UploadPool:
    """Starts each group's next batch in a thread of its own; acts on the outcome."""

    def __init__(self, inbox: queue.SimpleQueue[object], backoff: Backoff) -> None:
        self.inbox = inbox
        self.backoff = backoff
        self.rng = random.Random()
        # Threads start only as uploads need them; groups added by a reload share the pool.
        self.threads = ThreadPoolExecutor(max_workers=UPLOAD_THREADS, thread_name_prefix="upload")

    def start_next(self, worker: GroupWorker, now: float) -> None:
        """Start the upload of the group's next batch, if one may go now."""
        batch_id = worker.next_upload(now)
        if batch_id is None:
            return
        future = self.threads.submit(deliver, worker.delivery, batch_id)
        future.add_done_callback(lambda f: self.inbox.put(Finished(worker, batch_id, _result(f))))

    def finished(self, message: Finished, now: float, moment: datetime) -> None:
        """An upload's outcome: its batch leaves the line, or the line waits to retry it."""
        worker, result = message.worker, message.result
        worker.record(result, moment)
        if result.kind in (ResultKind.SENT, ResultKind.FAILED, ResultKind.HELD, ResultKind.GONE):
            worker.upload_ended(message.batch_id)
            return
        delay = worker.upload_waits(
            lambda attempt: self.backoff.delay(attempt, self.rng, result.retry_after), now
        )
        log.warning(
            "batch_waits",
            group=worker.group.key,
            batch=message.batch_id,
            step=result.step,
            reason=result.reason,
            retry_in_seconds=round(delay, 2),
        )

    def use_backoff(self, backoff: Backoff) -> None:
        """A reload changed the retry settings: the next waits follow them."""
        self.backoff = backoff

    def stop(self) -> None:
        """Start nothing more; an upload under way is left to end, or to the next start."""
        self.threads.shutdown(wait=False, cancel_futures=True)


def _result(future: object) -> BatchResult:
    # A bug in delivery must not lose the batch: it stays in the spool and waits.
    try:
        return future.result()  # type: ignore[attr-defined, no-any-return]
    except DropdError as exc:
        return BatchResult(ResultKind.WAIT, Step.INTERNAL, str(exc))
    except Exception as exc:
        log.exception("delivery_crashed")
        return BatchResult(ResultKind.WAIT, Step.INTERNAL, f"{type(exc).__name__}: {exc}")
