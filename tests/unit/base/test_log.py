"""Tests of the log set-up and the secret redaction (daemon/log.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from daemon.base.log import REDACTED, SecretRedactor

SECRET = "s3cr3t-Client-Value"
TOKEN = "eyJhbGciOi.J9payload.sig-_~+/="


def redact(event: dict[str, Any], *secrets: str) -> dict[str, Any]:
    """Run one event through a redactor that knows `secrets`."""
    return dict(SecretRedactor(secrets)(None, "info", dict(event)))


# -- SecretRedactor -------------------------------------------------------------------------


def test_secret_redactor_blanks_known_secrets_anywhere_in_strings() -> None:
    event = redact({"event": "x", "note": f"secret was {SECRET}!", "same": SECRET}, SECRET)
    assert event["note"] == f"secret was {REDACTED}!"
    assert event["same"] == REDACTED


def test_secret_redactor_blanks_secrets_added_later() -> None:
    redactor = SecretRedactor()
    redactor.add(TOKEN)
    event = redactor(None, "info", {"event": "x", "url": f"https://h/?t={TOKEN}"})
    assert TOKEN not in json.dumps(dict(event))


def test_secret_redactor_ignores_values_too_short_to_be_secrets() -> None:
    redactor = SecretRedactor(["abc"])
    redactor.add("")
    assert redactor.redact_text("abc abc") == "abc abc"


@pytest.mark.parametrize(
    "key",
    [
        "client_secret",
        "secret",
        "token",
        "access_token",
        "refresh_token",
        "Authorization",
        "authorization",
        "password",
        "client_assertion",
    ],
)
def test_secret_redactor_blanks_keys_named_like_secrets(key: str) -> None:
    event = redact({"event": "x", key: "whatever-value", "count": 3})
    assert event[key] == REDACTED
    assert event["count"] == 3


@pytest.mark.parametrize("key", ["token_url", "token_expires_in"])
def test_secret_redactor_keeps_token_url_and_figures(key: str) -> None:
    value = "https://apps-test.iu.edu/uaa-stg/oauth/token"
    assert redact({"event": "x", key: value})[key] == value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"Authorization: Bearer {TOKEN}", f"Authorization: Bearer {REDACTED}"),
        (f"bearer {TOKEN} then", f"bearer {REDACTED} then"),
        ("Basic ZHJvcGQ6c2VjcmV0", f"Basic {REDACTED}"),
        (f"https://h/cb?access_token={TOKEN}&x=1", f"https://h/cb?access_token={REDACTED}&x=1"),
        (f'{{"access_token": "{TOKEN}", "x": 1}}', f'{{"access_token": "{REDACTED}", "x": 1}}'),
        ("grant_type=client_credentials&client_secret=abc123", None),
        ("refresh_token:xyz987", f"refresh_token:{REDACTED}"),
    ],
)
def test_secret_redactor_blanks_credential_shapes_inside_strings(
    text: str, expected: str | None
) -> None:
    cleaned = redact({"event": "x", "detail": text})["detail"]
    if expected is not None:
        assert cleaned == expected
    assert TOKEN not in cleaned
    assert "abc123" not in cleaned
    assert "xyz987" not in cleaned


def test_secret_redactor_cleans_the_event_name_too() -> None:
    assert TOKEN not in redact({"event": f"Bearer {TOKEN}"})["event"]


def test_secret_redactor_walks_nested_dicts_and_lists() -> None:
    event = redact(
        {
            "event": "x",
            "request": {
                "headers": {"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"},
                "form": [{"client_secret": "abc"}, f"note {SECRET}", ("t", f"Bearer {TOKEN}")],
                "token_url": "https://h/oauth/token",
            },
            "answers": [{"nested": {"password": "p"}}],
        },
        SECRET,
    )
    text = json.dumps(event)
    assert TOKEN not in text and SECRET not in text and '"p"' not in text
    request = event["request"]
    assert request["headers"] == {"Authorization": REDACTED, "Accept": "application/json"}
    assert request["form"][0] == {"client_secret": REDACTED}
    assert request["form"][1] == f"note {REDACTED}"
    assert request["token_url"] == "https://h/oauth/token"
    assert event["answers"] == [{"nested": {"password": REDACTED}}]


def test_secret_redactor_redact_cleans_a_json_answer_and_leaves_the_original() -> None:
    redactor = SecretRedactor([TOKEN])
    answer = {
        "message": f"bad request from Bearer {TOKEN}",
        "fileErrors": [{"title": "t", "description": f"token {TOKEN}"}, None, 3],
        "access_token": "anything",
        "token_url": "https://h/oauth/token",
    }
    original = json.loads(json.dumps(answer))

    cleaned = redactor.redact(answer)

    assert cleaned == {
        "message": f"bad request from Bearer {REDACTED}",
        "fileErrors": [{"title": "t", "description": f"token {REDACTED}"}, None, 3],
        "access_token": REDACTED,
        "token_url": "https://h/oauth/token",
    }
    assert answer == original, "redact returns a copy"
    assert redactor.redact(f"x {TOKEN} y") == f"x {REDACTED} y"
    assert redactor.redact(None) is None and redactor.redact(42) == 42


def test_secret_redactor_leaves_other_values_alone() -> None:
    event = {"event": "batch_sent", "group": "music", "files": 3, "bytes": 1024, "ok": True}
    assert redact(event) == event


# -- configure, in a real process -----------------------------------------------------------


def run_stdout(body: str, log_format: str = "JSON") -> str:
    """Run `body` after daemon.base.log.configure() in a fresh process; return its stdout."""
    code = (
        "import logging, structlog\nfrom daemon.base import log as dlog\n"
        f"from daemon.base.log import LogFormat\ndlog.configure(LogFormat.{log_format})\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code + textwrap.dedent(body)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout, result.stderr
    return result.stdout


def run_logging(body: str) -> list[dict[str, Any]]:
    """Run `body` after configure() in JSON mode; its stdout lines as JSON."""
    return [json.loads(line) for line in run_stdout(body).splitlines()]


def test_configure_every_stdout_line_is_json_with_timestamp_level_event() -> None:
    events = run_logging(
        """
        log = structlog.get_logger()
        log.info("batch_sent", group="music", batch="B1", files=3, bytes=1024)
        log.debug("too_chatty")
        logging.getLogger("some.library").warning("disk at %d%%", 91)
        logging.getLogger("urllib3").info("quiet library")
        log.warning("multi_line", detail="one\\ntwo")
        """
    )

    assert [e["event"] for e in events] == ["batch_sent", "disk at 91%", "multi_line"]
    for event in events:
        assert {"timestamp", "level", "event"} <= event.keys()
        assert event["timestamp"].endswith("Z")
    assert [e["level"] for e in events] == ["info", "warning", "warning"]
    assert events[0] | {"timestamp": ""} == {
        "event": "batch_sent",
        "level": "info",
        "timestamp": "",
        "group": "music",
        "batch": "B1",
        "files": 3,
        "bytes": 1024,
    }


def test_configure_redacts_secrets_from_both_loggers() -> None:
    events = run_logging(
        f"""
        dlog.REDACTOR.add({SECRET!r})
        log = structlog.get_logger()
        log.info("token_fetched", access_token={TOKEN!r}, note="got {SECRET}")
        logging.getLogger("requests_oauthlib").warning("sent Authorization: Bearer {TOKEN}")
        logging.getLogger("app").warning("client secret is {SECRET}")
        """
    )
    text = json.dumps(events)
    assert len(events) == 3
    assert SECRET not in text
    assert TOKEN not in text


@pytest.mark.parametrize(
    ("logger", "name"),
    [
        ("structlog.get_logger()", "upload_crashed"),
        # A library's logger.exception() goes through the stdlib path; redaction holds there too.
        ('logging.getLogger("some.library")', "library_failed"),
    ],
)
def test_configure_redacts_exception_tracebacks(logger: str, name: str) -> None:
    events = run_logging(
        f"""
        dlog.REDACTOR.add({SECRET!r})
        try:
            raise RuntimeError("refused {SECRET} Bearer {TOKEN}")
        except RuntimeError:
            {logger}.exception({name!r})
        """
    )
    [event] = events
    assert event["event"] == name
    assert "exception" in event
    assert SECRET not in json.dumps(event)
    assert TOKEN not in json.dumps(event)


def test_configure_console_format_redacts_exception_tracebacks() -> None:
    out = run_stdout(
        f"""
        dlog.REDACTOR.add({SECRET!r})
        structlog.get_logger().info("batch_sent", note="got {SECRET}")
        try:
            raise RuntimeError("refused {SECRET} Bearer {TOKEN}")
        except RuntimeError:
            structlog.get_logger().exception("upload_crashed")
            logging.getLogger("some.library").exception("library_failed")
        """,
        log_format="CONSOLE",
    )
    assert "batch_sent" in out and "upload_crashed" in out and "library_failed" in out
    assert SECRET not in out
    assert TOKEN not in out


@pytest.mark.parametrize(
    ("level", "written"),
    [
        ("DEBUG", ["chatty", "batch_sent", "disk_low", "library warns", "upload_failed"]),
        ("INFO", ["batch_sent", "disk_low", "library warns", "upload_failed"]),
        ("WARNING", ["disk_low", "library warns", "upload_failed"]),
        ("ERROR", ["upload_failed"]),
    ],
)
def test_configure_writes_only_lines_at_or_above_the_log_level(
    level: str, written: list[str]
) -> None:
    out = run_stdout(
        f"""
        dlog.configure(LogFormat.JSON, level=dlog.LogLevel.{level}.number)
        log = structlog.get_logger()
        log.debug("chatty")
        log.info("batch_sent")
        log.warning("disk_low")
        logging.getLogger("urllib3").warning("library warns")  # held at WARNING of its own
        log.error("upload_failed")
        """
    )
    assert [json.loads(line)["event"] for line in out.splitlines()] == written


def test_configure_again_takes_the_new_level_and_format_for_loggers_already_made() -> None:
    out = run_stdout(
        """
        log = structlog.get_logger()
        log.info("before_reload")
        dlog.configure(LogFormat.CONSOLE, level=dlog.LogLevel.WARNING.number)
        log.info("hidden_now")
        log.warning("after_reload")
        """
    )
    first, second = out.splitlines()
    assert json.loads(first)["event"] == "before_reload"
    assert "after_reload" in second and not second.startswith("{")
    assert "hidden_now" not in out
