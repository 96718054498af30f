"""The sandbox's scripted answers: checked and typed when queued, each played once, in order.

The forms an answer takes are drawn in `daemon.sandbox.server`'s docstring.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AnswerKind", "Endpoint", "ScriptedAnswer", "ScriptedAnswers", "checked_answer"]

_ANSWER_KEYS = {
    *("status", "body", "headers", "retry_after", "html", "hang", "reset", "pause", "endpoint"),
    *("title", "location", "echo_authorization"),
}


class Endpoint(enum.StrEnum):
    """Which requests a scripted answer stands in for."""

    UPLOAD = "upload"
    TOKEN = "token"


class AnswerKind(enum.StrEnum):
    """What a scripted answer does: answer, hang, reset the connection, or pause then serve."""

    STATUS = "status"
    HANG = "hang"
    RESET = "reset"
    PAUSE = "pause"


@dataclass(frozen=True, slots=True)
class ScriptedAnswer:
    """One scripted answer, known to be playable. `seconds` is the hang's or the pause's;
    `body` is sent as given (JSON, or text when a string); `retry_after` and `location`
    become headers."""

    kind: AnswerKind
    endpoint: Endpoint = Endpoint.UPLOAD
    status: int = 200
    seconds: float = 0
    body: object = None
    headers: dict[str, str] = field(default_factory=dict)
    retry_after: str | None = None
    html: bool = False
    title: str | None = None
    location: str | None = None
    echo_authorization: bool = False


def checked_answer(answer: object) -> ScriptedAnswer:
    """A scripted answer read from its JSON; raises ValueError if it is not playable."""
    if not isinstance(answer, dict):
        raise ValueError(f"a scripted answer must be a JSON object, got {answer!r}")
    if problem := _problem(answer):
        raise ValueError(f"scripted answer {answer!r}: {problem}")
    [kind] = [kind for kind in AnswerKind if kind in answer]
    headers = answer.get("headers", {})
    return ScriptedAnswer(
        kind=kind,
        endpoint=Endpoint(answer.get("endpoint", Endpoint.UPLOAD)),
        status=answer.get("status", 200),
        seconds=answer[kind] if kind in (AnswerKind.HANG, AnswerKind.PAUSE) else 0,
        body=answer.get("body"),
        headers={str(name): str(value) for name, value in headers.items()},
        retry_after=str(answer["retry_after"]) if "retry_after" in answer else None,
        html=bool(answer.get("html")),
        title=answer.get("title"),
        location=answer.get("location"),
        echo_authorization=answer.get("echo_authorization", False),
    )


def _problem(answer: Mapping[str, Any]) -> str:
    """Why `answer` cannot be played; "" when it can."""
    status = answer.get("status", 200)
    wait = answer.get("hang", answer.get("pause", 0))
    if unknown := sorted(set(answer) - _ANSWER_KEYS):
        return f"unknown keys {unknown}"
    if sum(kind in answer for kind in AnswerKind) != 1:
        return "give exactly one of " + ", ".join(AnswerKind)
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        return "status must be an HTTP code, 100 to 599"
    if isinstance(wait, bool) or not isinstance(wait, int | float) or wait < 0:
        return "hang and pause take a number of seconds, 0 or more"
    if answer.get("reset", True) is not True:
        return "reset must be true"
    if answer.get("endpoint", "upload") not in tuple(Endpoint):
        return "endpoint must be 'upload' or 'token'"
    if not all(isinstance(answer.get(key, ""), str) for key in ("title", "location")):
        return "title and location must be strings"
    if not isinstance(answer.get("echo_authorization", False), bool):
        return "echo_authorization must be true or false"
    if not isinstance(answer.get("headers", {}), dict):
        return "headers must be a JSON object"
    if "title" in answer and not answer.get("html"):
        return "title goes with html: true"
    if "location" in answer and "status" not in answer:
        return "location goes with a status"
    if answer.get("echo_authorization") and not _echoable(answer):
        return "echo_authorization goes with a status and a JSON body (or none), not html"
    return ""


def _echoable(answer: Mapping[str, Any]) -> bool:
    # The echo is put in a JSON body: there must be one to put it in.
    body = answer.get("body")
    return (
        "status" in answer and not answer.get("html") and (body is None or isinstance(body, dict))
    )


class ScriptedAnswers:
    """The answers waiting to be played, one queue per endpoint."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[Endpoint, list[ScriptedAnswer]] = {e: [] for e in Endpoint}

    def add(self, answers: Sequence[object]) -> None:
        """Queue answers read from JSON, each to its endpoint; raises ValueError, queuing none,
        if one is not playable."""
        checked = [checked_answer(answer) for answer in answers]
        with self._lock:
            for answer in checked:
                self._queues[answer.endpoint].append(answer)

    def next(self, endpoint: Endpoint) -> ScriptedAnswer | None:
        """The next answer for `endpoint`, taken off its queue; None when none waits."""
        with self._lock:
            queue = self._queues[endpoint]
            return queue.pop(0) if queue else None

    def queued(self) -> dict[str, int]:
        """How many answers wait, by endpoint."""
        with self._lock:
            return {str(name): len(queue) for name, queue in self._queues.items()}
