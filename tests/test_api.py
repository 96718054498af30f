"""Tests of one upload and how its answer is read (daemon/api.py)."""

from __future__ import annotations

import email.parser
import email.policy
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from requests.structures import CaseInsensitiveDict

from daemon.api import (
    ANSWER_TEXT_LIMIT,
    OutcomeKind,
    classify,
    new_session,
    retry_after_seconds,
    upload_url,
    upload_zip,
)

NOW = datetime(2026, 11, 23, 8, 0, 0, tzinfo=UTC)
ACCEPTED = {
    "message": "The files are being processed. Summary emails will be sent at a later time.",
    "fileErrors": None,
}
PARSE_ERROR = {
    "message": "Error parsing uploaded files",
    "fileErrors": [{"title": "users.csv", "description": "Invalid header"}],
}
ZIP_BYTES = b"PK\x03\x04 not really a zip, but every byte must arrive: \x00\xff\r\n--\r\n" * 50
TOKEN = "tok-3f9a.b7"


def answer(status: int, body: Any, **headers: str) -> tuple[int, dict[str, str], str]:
    text = body if isinstance(body, str) else json.dumps(body)
    return status, dict(headers), text


# -- classify -------------------------------------------------------------------------------


def test_classify_200_is_sent_with_the_server_message() -> None:
    outcome = classify(*answer(200, ACCEPTED), now=NOW)
    assert outcome.kind is OutcomeKind.SENT
    assert outcome.status == 200
    assert outcome.answer == ACCEPTED
    assert outcome.reason == ACCEPTED["message"]


def test_classify_401_is_unauthorized() -> None:
    body = {"error": "invalid_token", "error_description": "Access token expired"}
    outcome = classify(*answer(401, body), now=NOW)
    assert outcome.kind is OutcomeKind.UNAUTHORIZED
    assert outcome.status == 401
    assert outcome.answer == body


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_classify_transient_statuses_are_retried(status: int) -> None:
    outcome = classify(*answer(status, {"status": status, "error": "x"}), now=NOW)
    assert outcome.kind is OutcomeKind.RETRY
    assert outcome.status == status
    assert outcome.retry_after is None
    assert str(status) in outcome.reason


def test_classify_429_with_retry_after_seconds() -> None:
    outcome = classify(*answer(429, "slow down", **{"Retry-After": "120"}), now=NOW)
    assert outcome.kind is OutcomeKind.RETRY
    assert outcome.retry_after == 120.0


def test_classify_503_with_retry_after_http_date() -> None:
    headers = {"Retry-After": "Mon, 23 Nov 2026 08:05:00 GMT"}
    outcome = classify(503, headers, "", now=NOW)
    assert outcome.kind is OutcomeKind.RETRY
    assert outcome.retry_after == 300.0


def test_classify_reads_retry_after_from_requests_headers() -> None:
    headers = CaseInsensitiveDict({"retry-after": "7"})
    assert classify(429, headers, "", now=NOW).retry_after == 7.0


def test_classify_400_keeps_message_and_file_errors() -> None:
    outcome = classify(*answer(400, PARSE_ERROR), now=NOW)
    assert outcome.kind is OutcomeKind.FAILED
    assert outcome.status == 400
    assert outcome.answer["message"] == "Error parsing uploaded files"
    assert outcome.answer["fileErrors"] == PARSE_ERROR["fileErrors"]
    assert "Error parsing uploaded files" in outcome.reason
    assert "400" in outcome.reason


def test_classify_403_fails_at_once_with_the_message() -> None:
    body = {"message": "User (music) is not authorized to upload files", "fileErrors": None}
    outcome = classify(*answer(403, body), now=NOW)
    assert outcome.kind is OutcomeKind.FAILED
    assert "not authorized" in outcome.reason


def test_classify_non_json_html_body_is_cut_to_the_limit() -> None:
    page = "<html><body>" + "x" * (ANSWER_TEXT_LIMIT * 3) + "</body></html>"
    outcome = classify(502, {}, page, now=NOW)
    assert outcome.kind is OutcomeKind.RETRY
    assert isinstance(outcome.answer, str)
    assert len(outcome.answer) == ANSWER_TEXT_LIMIT
    assert outcome.answer == page[:ANSWER_TEXT_LIMIT]
    assert "HTTP 502" in outcome.reason


def test_classify_empty_body_reason_names_the_status() -> None:
    outcome = classify(404, {}, "", now=NOW)
    assert outcome.kind is OutcomeKind.FAILED
    assert "404" in outcome.reason


# -- retry_after_seconds --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("", None),
        ("0", 0.0),
        ("30", 30.0),
        (" 45 ", 45.0),
        ("Mon, 23 Nov 2026 08:00:30 GMT", 30.0),
        ("Mon, 23 Nov 2026 07:00:00 GMT", 0.0),  # a date in the past: at once
        ("Mon, 23 Nov 2026 08:01:00 -0000", 60.0),
        ("soon", None),
        ("-5", None),
        ("1.5", None),
    ],
)
def test_retry_after_seconds(value: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(value, NOW) == seconds


# -- upload_zip against a real HTTP server --------------------------------------------------


@dataclass
class Received:
    method: str
    path: str
    headers: Message
    body: bytes


@dataclass
class Recorder:
    """What a tiny upload server received, and how it answers."""

    status: int = 200
    body: bytes = json.dumps(ACCEPTED).encode()
    headers: dict[str, str] = field(default_factory=dict)
    behaviour: str = "answer"  # or "close" (no answer) or "stall" (answer after release)
    requests: list[Received] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


def _handler(recorder: Recorder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            recorder.requests.append(Received("POST", self.path, self.headers, body))
            if recorder.behaviour == "close":
                self.close_connection = True
                return
            if recorder.behaviour == "stall":
                recorder.release.wait(5)
                self.close_connection = True
                return
            self.send_response(recorder.status)
            for name, value in recorder.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(recorder.body)))
            self.end_headers()
            self.wfile.write(recorder.body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@dataclass
class UploadServer:
    url: str
    recorder: Recorder


@pytest.fixture
def server() -> Iterator[UploadServer]:
    recorder = Recorder()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(recorder))
    httpd.daemon_threads = True
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    try:
        yield UploadServer(f"http://127.0.0.1:{httpd.server_address[1]}", recorder)
    finally:
        recorder.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture
def zip_file(tmp_path: Path) -> Path:
    path = tmp_path / "upload.zip"
    path.write_bytes(ZIP_BYTES)
    return path


def parts_of(received: Received) -> dict[str, Message]:
    """The multipart body's parts by their form name."""
    head = f"Content-Type: {received.headers['Content-Type']}\r\n\r\n".encode()
    parsed = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + received.body)
    assert parsed.is_multipart()
    parts: dict[str, Message] = {}
    for part in parsed.iter_parts():
        name = part.get_param("name", header="content-disposition")
        assert isinstance(name, str)
        assert name not in parts
        parts[name] = part
    return parts


def upload(
    server: UploadServer, zip_file: Path, custom: bool = False, read_timeout: float = 5.0
) -> Any:
    session = new_session()
    try:
        url = upload_url(server.url, "music")
        return upload_zip(session, url, zip_file, "B1.zip", TOKEN, custom, (2.0, read_timeout))
    finally:
        session.close()


def test_upload_url_is_the_zip_endpoint() -> None:
    assert upload_url("https://h.example", "music") == "https://h.example/rest/upload/music/zip"


def test_upload_zip_posts_one_deptfileupload_part_with_the_zip_bytes(
    server: UploadServer, zip_file: Path
) -> None:
    outcome = upload(server, zip_file)

    assert outcome.kind is OutcomeKind.SENT
    assert outcome.answer == ACCEPTED
    assert outcome.seconds >= 0
    [received] = server.recorder.requests
    assert received.path == "/rest/upload/music/zip"
    parts = parts_of(received)
    assert list(parts) == ["deptFileUpload"]
    part = parts["deptFileUpload"]
    assert part.get_filename() == "B1.zip"
    assert part.get_content_type() == "application/zip"
    assert part.get_payload(decode=True) == ZIP_BYTES


def test_upload_zip_sends_bearer_token_and_content_length(
    server: UploadServer, zip_file: Path
) -> None:
    upload(server, zip_file)

    [received] = server.recorder.requests
    assert received.headers["Authorization"] == f"Bearer {TOKEN}"
    assert received.headers["Content-Length"] == str(len(received.body))
    assert received.headers["Transfer-Encoding"] is None
    assert received.headers["Content-Type"].startswith("multipart/form-data; boundary=")


def test_upload_zip_custom_notification_only_when_asked(
    server: UploadServer, zip_file: Path
) -> None:
    upload(server, zip_file, custom=True)
    upload(server, zip_file, custom=False)

    with_notice, without = (parts_of(r) for r in server.recorder.requests)
    assert sorted(with_notice) == ["customUsersNotification", "deptFileUpload"]
    assert with_notice["customUsersNotification"].get_payload(decode=True) == b"true"
    assert with_notice["deptFileUpload"].get_payload(decode=True) == ZIP_BYTES
    assert list(without) == ["deptFileUpload"]


def test_upload_zip_400_from_the_server_fails_with_its_answer(
    server: UploadServer, zip_file: Path
) -> None:
    server.recorder.status = 400
    server.recorder.body = json.dumps(PARSE_ERROR).encode()

    outcome = upload(server, zip_file)

    assert outcome.kind is OutcomeKind.FAILED
    assert outcome.status == 400
    assert outcome.answer == PARSE_ERROR


def test_upload_zip_429_from_the_server_retries_after(server: UploadServer, zip_file: Path) -> None:
    server.recorder.status = 429
    server.recorder.headers = {"Retry-After": "9"}

    outcome = upload(server, zip_file)

    assert outcome.kind is OutcomeKind.RETRY
    assert outcome.retry_after == 9.0


def test_upload_zip_closed_connection_is_retried(server: UploadServer, zip_file: Path) -> None:
    server.recorder.behaviour = "close"

    outcome = upload(server, zip_file)

    assert outcome.kind is OutcomeKind.RETRY
    assert outcome.status is None
    assert len(server.recorder.requests) == 1  # the streamed body is never resent


def test_upload_zip_read_timeout_is_retried(server: UploadServer, zip_file: Path) -> None:
    server.recorder.behaviour = "stall"

    outcome = upload(server, zip_file, read_timeout=0.2)

    assert outcome.kind is OutcomeKind.RETRY
    assert "timed out" in outcome.reason
    assert outcome.seconds < 4


def test_upload_zip_nothing_listening_is_retried(zip_file: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    session = new_session()
    try:
        url = upload_url(f"http://127.0.0.1:{port}", "music")
        outcome = upload_zip(session, url, zip_file, "B1.zip", TOKEN, False, (1.0, 1.0))
    finally:
        session.close()
    assert outcome.kind is OutcomeKind.RETRY
    assert TOKEN not in outcome.reason
