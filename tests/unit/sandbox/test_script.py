"""Scripted answers are checked and typed when queued, and played once each, per endpoint."""

from __future__ import annotations

import pytest

from daemon.sandbox.script import (
    AnswerKind,
    Endpoint,
    ScriptedAnswer,
    ScriptedAnswers,
    checked_answer,
)


def test_checked_answer_types_every_field_of_a_status_answer() -> None:
    answer = checked_answer(
        {
            "status": 302,
            "headers": {"X-Why": 7},
            "retry_after": 2,
            "location": "/_sandbox/elsewhere",
            "endpoint": "token",
        }
    )
    assert answer == ScriptedAnswer(
        kind=AnswerKind.STATUS,
        endpoint=Endpoint.TOKEN,
        status=302,
        headers={"X-Why": "7"},
        retry_after="2",
        location="/_sandbox/elsewhere",
    )


@pytest.mark.parametrize(
    ("given", "kind", "seconds"),
    [({"hang": 30}, AnswerKind.HANG, 30), ({"pause": 0.5}, AnswerKind.PAUSE, 0.5)],
)
def test_checked_answer_keeps_the_seconds_of_a_hang_or_pause(
    given: dict[str, object], kind: AnswerKind, seconds: float
) -> None:
    answer = checked_answer(given)
    assert (answer.kind, answer.seconds, answer.endpoint) == (kind, seconds, Endpoint.UPLOAD)
    assert str(answer.seconds) == str(seconds), "logged as given: `hang 30s`, not `30.0s`"


def test_checked_answer_html_and_echo_flags() -> None:
    page = checked_answer({"status": 200, "html": True, "title": "Sign in"})
    assert page.html and page.title == "Sign in" and page.body is None
    echo = checked_answer({"status": 400, "body": {"x": 1}, "echo_authorization": True})
    assert echo.echo_authorization and echo.body == {"x": 1} and not echo.html


def test_checked_answer_refuses_headers_that_are_not_an_object() -> None:
    with pytest.raises(ValueError, match="headers must be a JSON object"):
        checked_answer({"status": 503, "headers": [["X-Why", "busy"]]})


def test_answers_wait_per_endpoint_and_are_played_once_in_order() -> None:
    answers = ScriptedAnswers()
    answers.add([{"status": 503}, {"reset": True, "endpoint": "token"}, {"hang": 1}])
    assert answers.queued() == {"upload": 2, "token": 1}
    first, second = answers.next(Endpoint.UPLOAD), answers.next(Endpoint.UPLOAD)
    assert first is not None and first.kind is AnswerKind.STATUS and first.status == 503
    assert second is not None and second.kind is AnswerKind.HANG
    assert answers.next(Endpoint.UPLOAD) is None
    token = answers.next(Endpoint.TOKEN)
    assert token is not None and token.kind is AnswerKind.RESET
    assert answers.queued() == {"upload": 0, "token": 0}


def test_one_bad_answer_queues_none() -> None:
    answers = ScriptedAnswers()
    with pytest.raises(ValueError, match="scripted answer"):
        answers.add([{"status": 503}, {"status": 99}])
    assert answers.queued() == {"upload": 0, "token": 0}
