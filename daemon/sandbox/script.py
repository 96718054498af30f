"""The sandbox's scripted answers: checked when queued, each played once, in order.

The forms an answer takes are drawn in `daemon.sandbox.server`'s docstring.
"""

from __future__ import annotations

import threading
from typing import Any

_ANSWER_KEYS = {
    *("status", "body", "headers", "retry_after", "html", "hang", "reset", "pause", "endpoint"),
    *("title", "location", "echo_authorization"),
}
_KINDS = ("status", "hang", "reset", "pause")


def checked_answer(answer: object) -> dict[str, Any]:
    """Return a scripted answer once it is known to be playable; raises ValueError if not."""
    if not isinstance(answer, dict):
        raise ValueError(f"a scripted answer must be a JSON object, got {answer!r}")
    problem = ""
    status = answer.get("status", 200)
    wait = answer.get("hang", answer.get("pause", 0))
    if unknown := sorted(set(answer) - _ANSWER_KEYS):
        problem = f"unknown keys {unknown}"
    elif sum(key in answer for key in _KINDS) != 1:
        problem = "give exactly one of " + ", ".join(_KINDS)
    elif isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        problem = "status must be an HTTP code, 100 to 599"
    elif isinstance(wait, bool) or not isinstance(wait, int | float) or wait < 0:
        problem = "hang and pause take a number of seconds, 0 or more"
    elif answer.get("reset", True) is not True:
        problem = "reset must be true"
    elif answer.get("endpoint", "upload") not in ("upload", "token"):
        problem = "endpoint must be 'upload' or 'token'"
    elif not all(isinstance(answer.get(key, ""), str) for key in ("title", "location")):
        problem = "title and location must be strings"
    elif not isinstance(answer.get("echo_authorization", False), bool):
        problem = "echo_authorization must be true or false"
    elif "title" in answer and not answer.get("html"):
        problem = "title goes with html: true"
    elif "location" in answer and "status" not in answer:
        problem = "location goes with a status"
    elif answer.get("echo_authorization") and not _echoable(answer):
        problem = "echo_authorization goes with a status and a JSON body (or none), not html"
    if problem:
        raise ValueError(f"scripted answer {answer!r}: {problem}")
    return answer


def _echoable(answer: dict[str, Any]) -> bool:
    # The echo is put in a JSON body: there must be one to put it in.
    body = answer.get("body")
    return (
        "status" in answer and not answer.get("html") and (body is None or isinstance(body, dict))
    )


class ScriptedAnswers:
    """The answers waiting to be played, one queue per endpoint ("upload" and "token")."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, list[dict[str, Any]]] = {"upload": [], "token": []}

    def add(self, answers: list[dict[str, Any]]) -> None:
        """Queue answers, each to its endpoint; raises ValueError, queuing none, if one is bad."""
        checked = [checked_answer(answer) for answer in answers]
        with self._lock:
            for answer in checked:
                self._queues[answer.get("endpoint", "upload")].append(answer)

    def next(self, endpoint: str) -> dict[str, Any] | None:
        """The next answer for `endpoint`, taken off its queue; None when none waits."""
        with self._lock:
            queue = self._queues[endpoint]
            return queue.pop(0) if queue else None

    def queued(self) -> dict[str, int]:
        """How many answers wait, by endpoint."""
        with self._lock:
            return {name: len(queue) for name, queue in self._queues.items()}
