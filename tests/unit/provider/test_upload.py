"""Tests of one upload and how its answer is read (daemon/api.py)."""

from __future__ import annotations

import email.parser
import email.policy
import json
import shutil
import socket
import ssl
import subprocess
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

from daemon.base.log import REDACTED, REDACTOR
from daemon.provider.upload import (
    ANSWER_TEXT_LIMIT,
    QUOTE_LIMIT,
    OutcomeKind,
    classify,
    new_session,
    retry_after_seconds,
    trust_with,
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


# -- only the API's own answer counts as sent -------------------------------------------------

SIGN_IN = (
    "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>\n<TITLE>Sign in to\n  Campus &amp; SSO"
    "</TITLE></head><body><form action='/login'>...</form></body></html>"
)
HTML = {"Content-Type": "text/html; charset=UTF-8"}
JSON = {"Content-Type": "application/json"}


def test_classify_200_with_the_apis_json_message_is_sent() -> None:
    body = {"message": "Files uploaded successfully", "fileErrors": [{"title": "t"}]}
    outcome = classify(200, JSON, json.dumps(body), now=NOW)
    assert outcome.kind is OutcomeKind.SENT
    assert outcome.answer == body
    assert outcome.reason == "Files uploaded successfully"


@pytest.mark.parametrize("status", [201, 202, 206])
def test_classify_another_2xx_even_with_a_message_is_not_the_apis_answer(status: int) -> None:
    # The API answers an upload with 200; anything else answered in its place.
    body = {"message": "Accepted"}
    outcome = classify(status, JSON, json.dumps(body), now=NOW)
    assert outcome.kind is OutcomeKind.RETRY
    assert f"HTTP {status}" in outcome.reason


def test_classify_413_fails_naming_max_upload_bytes() -> None:
    outcome = classify(413, JSON, json.dumps({"status": 413, "error": "Payload Too Large"}))
    assert outcome.kind is OutcomeKind.FAILED
    assert "max_upload_bytes" in outcome.reason and "413" in outcome.reason


# Spring Boot's error body for MaxUploadSizeExceededException, and what some deployments send
# in its place: a 500 or 400 whose body carries the exception's message.
SPRING_413 = {
    "timestamp": "2026-11-23T08:00:00.000+00:00",
    "status": 413,
    "error": "Payload Too Large",
    "path": "/rest/upload/music/zip",
}
SPRING_500_MESSAGE = {
    "timestamp": "2026-11-23T08:00:00.000+00:00",
    "status": 500,
    "error": "Internal Server Error",
    "message": "Maximum upload size exceeded",
    "path": "/rest/upload/music/zip",
}
TOMCAT_PAGE = (
    "<html><head><title>HTTP Status 500 - Internal Server Error</title></head><body>"
    "<p>org.springframework.web.multipart.MaxUploadSizeExceededException: Maximum upload "
    "size exceeded; nested exception is java.lang.IllegalStateException: "
    "org.apache.tomcat.util.http.fileupload.impl.FileSizeLimitExceededException: The field "
    "deptFileUpload exceeds its maximum permitted size of 1048576 bytes.</p></body></html>"
)


@pytest.mark.parametrize(
    ("status", "headers", "body"),
    [
        (413, JSON, json.dumps(SPRING_413)),
        (413, HTML, "<html><head><title>413 Request Entity Too Large</title></head></html>"),
        (413, {}, ""),
        (500, JSON, json.dumps(SPRING_500_MESSAGE)),
        (500, HTML, TOMCAT_PAGE),
        (400, JSON, json.dumps({**SPRING_500_MESSAGE, "status": 400, "error": "Bad Request"})),
        (400, {"Content-Type": "text/plain"}, "Maximum upload size exceeded"),
        (503, {"Content-Type": "text/plain"}, "SizeLimitExceededException: request too big"),
    ],
    ids=["spring-413", "proxy-413", "bare-413", "spring-500", "tomcat-500", "400", "text", "503"],
)
def test_classify_an_upload_over_the_size_limit_fails_the_batch_naming_max_upload_bytes(
    status: int, headers: dict[str, str], body: str
) -> None:
    outcome = classify(status, headers, body, now=NOW, request_bytes=2_345_678)
    assert outcome.kind is OutcomeKind.FAILED, "never retried: it would be refused again"
    assert not outcome.retryable
    assert outcome.status == status
    assert outcome.reason.startswith(
        f"the server refused the upload of 2,345,678 bytes as too large (HTTP {status}, "
        "maximum upload size exceeded): set max_upload_bytes for the group below the "
        "server's limit"
    )


def test_classify_a_500_that_says_nothing_of_size_is_still_retried() -> None:
    body = {**SPRING_500_MESSAGE, "message": "Unable to unzip uploaded file"}
    outcome = classify(500, JSON, json.dumps(body), now=NOW, request_bytes=10)
    assert outcome.kind is OutcomeKind.RETRY
    assert "max_upload_bytes" not in outcome.reason


def test_classify_200_sign_in_page_is_retried_naming_its_title() -> None:
    outcome = classify(200, HTML, SIGN_IN, now=NOW)
    assert outcome.kind is OutcomeKind.RETRY
    assert outcome.status == 200
    assert outcome.reason == (
        'the upload was answered HTTP 200 with text/html (page title "Sign in to Campus & SSO"), '
        "not the API's JSON answer: a proxy, captive portal or sign-in page answered instead "
        "of the API"
    )
    assert outcome.retryable, "delivery adds that dropd tries again"
    assert outcome.answer == SIGN_IN  # kept as text, as any non-JSON answer is
    assert outcome.retry_after is None


@pytest.mark.parametrize(
    ("status", "headers", "text", "said"),
    [
        (200, {"Content-Type": "text/plain"}, "", "HTTP 200 with text/plain (empty body)"),
        (200, {}, "  \r\n", "HTTP 200 with no content type (empty body)"),
        (204, {}, "", "HTTP 204 with no content type (empty body)"),
        (200, {"content-type": "text/plain"}, "OK", 'HTTP 200 with text/plain (body "OK")'),
        (200, HTML, "<html><body>hi</body></html>", "(body "),
        (200, JSON, '{"status": "UP"}', 'HTTP 200 with application/json (body "{\\"status\\"'),
        (200, JSON, '[{"message": "x"}]', 'HTTP 200 with application/json (body "[{'),
        (200, JSON, '{"message": null}', "HTTP 200 with application/json"),
        (200, JSON, '{"message": ["x"]}', "HTTP 200 with application/json"),
        (200, JSON, '"just a string"', "HTTP 200 with application/json"),
        (202, HTML, SIGN_IN, 'HTTP 202 with text/html (page title "Sign in to Campus & SSO")'),
    ],
)
def test_classify_2xx_that_is_not_the_apis_answer_is_retried(
    status: int, headers: dict[str, str], text: str, said: str
) -> None:
    outcome = classify(status, headers, text, now=NOW)
    assert outcome.kind is OutcomeKind.RETRY, outcome
    assert outcome.status == status
    assert said in outcome.reason, outcome.reason
    assert outcome.reason.startswith(f"the upload was answered HTTP {status} with ")
    assert "not the API's JSON answer" in outcome.reason
    assert outcome.retryable and not outcome.reason.endswith("; dropd tries again")


def test_classify_200_json_that_is_not_the_apis_says_check_base_url() -> None:
    outcome = classify(200, JSON, '{"status": "UP"}', now=NOW)
    assert outcome.answer == {"status": "UP"}
    assert "check base_url" in outcome.reason
    assert "captive portal" not in outcome.reason


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_classify_redirect_is_retried_naming_where_it_points(status: int) -> None:
    where = "https://login.example.edu/cas/login?service=https%3A%2F%2Fapi"
    outcome = classify(status, {"Location": where, "Content-Type": "text/html"}, "", now=NOW)
    assert outcome.kind is OutcomeKind.RETRY
    assert outcome.status == status
    assert outcome.reason == (
        f'the upload was answered HTTP {status}, a redirect to "{where}", which dropd never '
        "follows (the API never redirects); check base_url"
    )
    assert outcome.retryable


@pytest.mark.parametrize("status", [300, 304])
def test_classify_3xx_without_location_is_retried(status: int) -> None:
    outcome = classify(status, {}, "", now=NOW)
    assert outcome.kind is OutcomeKind.RETRY
    assert f"HTTP {status} with no Location header" in outcome.reason
    assert outcome.retryable


def test_classify_quotes_a_long_title_or_location_cut_to_the_quote_limit() -> None:
    title = "Welcome " * 100
    page = f"<html><head><title>{title}</title></head></html>"
    retried = classify(200, HTML, page, now=NOW)
    quoted = retried.reason.split("page title ", 1)[1].split(")", 1)[0]
    assert quoted.startswith('"Welcome Welcome') and quoted.endswith('..."')
    assert QUOTE_LIMIT <= len(quoted) <= QUOTE_LIMIT + 2  # the quotes themselves
    location = "https://login.example.edu/" + "a" * 1000
    redirected = classify(302, {"Location": location}, "", now=NOW)
    assert location[: QUOTE_LIMIT - 3] + '..."' in redirected.reason
    assert location[:QUOTE_LIMIT] not in redirected.reason


def test_classify_a_title_with_quotes_stays_one_quoted_value() -> None:
    page = '<title>Say "hi"</title>'
    outcome = classify(200, HTML, page, now=NOW)
    assert '(page title "Say \\"hi\\"")' in outcome.reason


def test_classify_502_html_page_names_its_content_type_and_title() -> None:
    page = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>nginx</body></html>"
    outcome = classify(502, {"Content-Type": "text/html"}, page, now=NOW)
    assert outcome.kind is OutcomeKind.RETRY
    assert outcome.reason == (
        'the server answered HTTP 502 with text/html (page title "502 Bad Gateway")'
    )
    assert outcome.retryable


def test_classify_4xx_html_page_fails_naming_its_title() -> None:
    page = "<html><head><title>Forbidden by the campus firewall</title></head></html>"
    outcome = classify(403, HTML, page, now=NOW)
    assert outcome.kind is OutcomeKind.FAILED
    assert outcome.reason == (
        "the server refused the upload, answering HTTP 403 with text/html "
        '(page title "Forbidden by the campus firewall")'
    )
    assert not outcome.retryable


# -- what answers and reasons keep of a token -------------------------------------------------

ECHOED = "eyJhbGciOiJSUzI1NiJ9.echoed-token.sig"


@pytest.fixture
def known_token() -> str:
    REDACTOR.add(ECHOED)  # as TokenSource does with every token it fetches
    return ECHOED


def test_classify_400_echoing_the_bearer_token_keeps_no_token(known_token: str) -> None:
    body = {
        "message": f"bad request from Bearer {known_token}",
        "fileErrors": [{"title": "x", "description": f"token {known_token} refused"}],
        "access_token": known_token,
    }
    outcome = classify(400, JSON, json.dumps(body), now=NOW)
    assert outcome.kind is OutcomeKind.FAILED
    assert known_token not in json.dumps(outcome.answer)
    assert known_token not in outcome.reason
    assert outcome.answer["message"] == f"bad request from Bearer {REDACTED}"
    assert outcome.answer["fileErrors"][0]["description"] == f"token {REDACTED} refused"
    assert outcome.answer["access_token"] == REDACTED
    assert (
        outcome.reason
        == f"the server refused the upload with HTTP 400: {outcome.answer['message']}"
    )


def test_classify_unknown_bearer_token_shape_is_redacted_too() -> None:
    body = {"message": "bad request from Bearer not-known-but-shaped-like-one"}
    outcome = classify(400, JSON, json.dumps(body), now=NOW)
    assert "not-known-but-shaped-like-one" not in json.dumps(outcome.answer) + outcome.reason


@pytest.mark.parametrize("status", [200, 502])
def test_classify_page_echoing_the_token_keeps_no_token(status: int, known_token: str) -> None:
    page = f"<html><head><title>Hello {known_token}</title></head><body>{known_token}</body></html>"
    outcome = classify(status, HTML, page, now=NOW)
    assert outcome.kind is OutcomeKind.RETRY
    assert known_token not in outcome.answer and REDACTED in outcome.answer
    assert known_token not in outcome.reason and f'"Hello {REDACTED}"' in outcome.reason


def test_classify_token_across_the_answer_cut_leaves_no_part_of_it(known_token: str) -> None:
    # The token starts just before the cut: cutting first would keep its first characters.
    page = "x" * (ANSWER_TEXT_LIMIT - 10) + known_token + "y" * 100
    outcome = classify(502, {}, page, now=NOW)
    assert isinstance(outcome.answer, str) and len(outcome.answer) == ANSWER_TEXT_LIMIT
    assert known_token[:10] not in outcome.answer
    assert outcome.answer.endswith(REDACTED[:10])


def test_classify_location_carrying_the_token_is_redacted(known_token: str) -> None:
    where = f"https://sso.example.edu/continue?access_token={known_token}&next=/rest"
    outcome = classify(302, {"Location": where}, "", now=NOW)
    assert known_token not in outcome.reason
    assert "https://sso.example.edu/continue?access_token=" in outcome.reason


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
    content_type: str = "application/json"
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
            self.send_header("Content-Type", recorder.content_type)
            self.send_header("Content-Length", str(len(recorder.body)))
            self.end_headers()
            self.wfile.write(recorder.body)

        def do_GET(self) -> None:
            # Where a followed redirect would land: counted, and answered like the API.
            recorder.requests.append(Received("GET", self.path, self.headers, b""))
            body = json.dumps(ACCEPTED).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

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


def test_upload_zip_413_fails_naming_the_size_sent_and_max_upload_bytes(
    server: UploadServer, zip_file: Path
) -> None:
    server.recorder.status = 413
    server.recorder.body = json.dumps(SPRING_413).encode()

    outcome = upload(server, zip_file)

    assert outcome.kind is OutcomeKind.FAILED
    [received] = server.recorder.requests
    assert f"the upload of {len(received.body):,} bytes as too large" in outcome.reason
    assert "max_upload_bytes" in outcome.reason
    assert outcome.answer == SPRING_413


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


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_upload_zip_never_follows_a_redirect(
    server: UploadServer, zip_file: Path, status: int
) -> None:
    # The redirect points back at the same server, which would answer like the API.
    server.recorder.status = status
    server.recorder.headers = {"Location": f"{server.url}/elsewhere"}
    server.recorder.body = b""

    outcome = upload(server, zip_file)

    assert outcome.kind is OutcomeKind.RETRY
    assert outcome.status == status
    assert f'a redirect to "{server.url}/elsewhere"' in outcome.reason
    assert [(r.method, r.path) for r in server.recorder.requests] == [
        ("POST", "/rest/upload/music/zip")
    ]


def test_upload_zip_200_sign_in_page_is_retried(server: UploadServer, zip_file: Path) -> None:
    server.recorder.content_type = "text/html; charset=utf-8"
    server.recorder.body = SIGN_IN.encode()

    outcome = upload(server, zip_file)

    assert outcome.kind is OutcomeKind.RETRY
    assert outcome.status == 200
    assert 'text/html (page title "Sign in to Campus & SSO")' in outcome.reason


def test_upload_zip_200_empty_body_is_retried(server: UploadServer, zip_file: Path) -> None:
    server.recorder.body = b""

    outcome = upload(server, zip_file)

    assert outcome.kind is OutcomeKind.RETRY
    assert "HTTP 200 with application/json (empty body)" in outcome.reason


def test_ca_bundle_adds_to_the_systems_trust_and_never_replaces_it(tmp_path: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    cert = tmp_path / "campus.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=campus CA", "-keyout", str(tmp_path / "key.pem"), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    system = ssl.create_default_context().cert_store_stats()["x509_ca"]
    if not system:
        pytest.skip("this system trusts no CA at all")
    assert trust_with(cert).cert_store_stats()["x509_ca"] == system + 1
