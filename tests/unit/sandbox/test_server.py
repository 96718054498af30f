"""The sandbox as its users see it: a real HTTP server on 127.0.0.1, driven with requests."""

from __future__ import annotations

import hashlib
import io
import json
import re
import select
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from daemon.sandbox import checks as sandbox_checks
from daemon.sandbox.server import Sandbox
from unit.clock import ManualClock

CLIENT = ("unit", "s3cret")
TIMEOUT = 10.0  # generous: only a broken sandbox makes a test wait this long
USERS = (
    b"user_id,login_id,first_name,last_name,email,status\r\n"
    b"u1,guest@example.edu,Ada,Lovelace,guest@example.edu,active\r\n"
)
ENROLLMENTS = b"course_id,user_id,role,section_id,status\nc1,u1,student,s1,active\n"
MESSAGE = b"sender=noreply@example.edu\nsubject=Welcome\nbody=Hello\n"
ACCEPTED = "The files are being processed. Summary emails will be sent at a later time."


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_700_000_000.0)


@pytest.fixture
def sandbox(tmp_path: Path, clock: ManualClock) -> Iterator[Sandbox]:
    clients = {CLIENT[0]: CLIENT[1]}
    with Sandbox(tmp_path / "store", clients=clients, token_lifetime=60, clock=clock) as running:
        yield running


def zip_of(files: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=method) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def get_token(sandbox: Sandbox) -> str:
    answer = requests.post(
        sandbox.token_url, data={"grant_type": "client_credentials"}, auth=CLIENT, timeout=TIMEOUT
    )
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    return token


def upload(
    sandbox: Sandbox,
    token: str | None,
    parts: list[tuple[str, bytes]],
    *,
    endpoint: str = "zip",
    group: str = "music",
    fields: dict[str, str] | None = None,
) -> requests.Response:
    """POST parts as `deptFileUpload` to the zip endpoint, or to the files endpoint."""
    url = f"{sandbox.url}/rest/upload/{group}" + ("/zip" if endpoint == "zip" else "")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    files = [("deptFileUpload", part) for part in parts]
    return requests.post(url, files=files, data=fields, headers=headers, timeout=TIMEOUT)


def upload_zip(sandbox: Sandbox, files: dict[str, bytes], **options: Any) -> requests.Response:
    return upload(sandbox, get_token(sandbox), [("batch.zip", zip_of(files))], **options)


# The token endpoint


def test_token_via_basic_auth_is_a_bearer_token_that_uploads(sandbox: Sandbox) -> None:
    answer = requests.post(
        sandbox.token_url, data={"grant_type": "client_credentials"}, auth=CLIENT, timeout=TIMEOUT
    )
    body = answer.json()
    assert answer.status_code == 200
    assert body["token_type"] == "bearer" and body["expires_in"] == 60
    assert body["scope"] == "read write" and body["jti"]
    assert answer.headers["Cache-Control"] == "no-store"
    assert upload(sandbox, body["access_token"], [("b.zip", zip_of({"u.csv": USERS}))]).ok


def test_token_via_form_body_credentials(sandbox: Sandbox) -> None:
    form = {"grant_type": "client_credentials", "client_id": CLIENT[0], "client_secret": CLIENT[1]}
    answer = requests.post(sandbox.token_url, data=form, timeout=TIMEOUT)
    assert answer.status_code == 200
    assert upload(sandbox, answer.json()["access_token"], [("b.zip", zip_of({"u": USERS}))]).ok


@pytest.mark.parametrize(
    ("auth", "form"),
    [
        (("unit", "wrong"), {}),
        (("stranger", "s3cret"), {}),
        (None, {"client_id": "unit", "client_secret": "wrong"}),
        (None, {}),
    ],
)
def test_token_wrong_or_missing_client_is_401_invalid_client(
    sandbox: Sandbox, auth: tuple[str, str] | None, form: dict[str, str]
) -> None:
    data = {"grant_type": "client_credentials"} | form
    answer = requests.post(sandbox.token_url, data=data, auth=auth, timeout=TIMEOUT)
    assert answer.status_code == 401
    assert answer.json()["error"] == "invalid_client"


@pytest.mark.parametrize(
    ("grant_type", "error"), [("password", "unsupported_grant_type"), ("", "invalid_request")]
)
def test_token_other_grant_type_is_400(sandbox: Sandbox, grant_type: str, error: str) -> None:
    data = {"grant_type": grant_type}
    answer = requests.post(sandbox.token_url, data=data, auth=CLIENT, timeout=TIMEOUT)
    assert answer.status_code == 400
    assert answer.json()["error"] == error


def test_token_expires_after_its_lifetime(sandbox: Sandbox, clock: ManualClock) -> None:
    token = get_token(sandbox)
    clock.now += 59.9
    assert upload_ok(sandbox, token)
    clock.now += 0.1
    answer = upload(sandbox, token, [("b.zip", zip_of({"u.csv": USERS}))])
    assert answer.status_code == 401
    assert answer.json() == {"error": "invalid_token", "error_description": "Access token expired"}
    assert answer.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')


def upload_ok(sandbox: Sandbox, token: str) -> bool:
    return upload(sandbox, token, [("b.zip", zip_of({"u.csv": USERS}))]).status_code == 200


# 401 on the upload endpoints


def test_upload_without_token_is_401_like_spring(sandbox: Sandbox) -> None:
    answer = upload(sandbox, None, [("b.zip", zip_of({"u.csv": USERS}))])
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == "Bearer"
    assert answer.json()["error"] == "unauthorized"
    assert sandbox.uploads() == []


def test_upload_with_unknown_token_is_401_invalid_token(sandbox: Sandbox) -> None:
    answer = upload(sandbox, "not-a-token", [("b.zip", zip_of({"u.csv": USERS}))])
    assert answer.status_code == 401
    assert answer.json()["error"] == "invalid_token"


def test_revoked_tokens_are_refused_and_new_ones_work(sandbox: Sandbox) -> None:
    first = get_token(sandbox)
    sandbox.revoke_tokens()
    assert upload(sandbox, first, [("b.zip", zip_of({"u": USERS}))]).status_code == 401
    second = get_token(sandbox)
    assert requests.post(f"{sandbox.url}/_sandbox/revoke", timeout=TIMEOUT).ok
    assert upload(sandbox, second, [("b.zip", zip_of({"u": USERS}))]).status_code == 401
    assert upload_ok(sandbox, get_token(sandbox))


# Accepted uploads and the store


def test_upload_zip_is_kept_byte_for_byte_with_request_json(sandbox: Sandbox) -> None:
    data = zip_of({"export/users.csv": USERS, "message.properties": MESSAGE})
    token = get_token(sandbox)
    fields = {"customUsersNotification": "true"}
    answer = upload(sandbox, token, [("batch-1.zip", data)], fields=fields)
    assert answer.status_code == 200
    assert answer.json() == {"message": ACCEPTED, "fileErrors": None}
    [folder] = sandbox.uploads()
    assert folder.name == "000001-music"
    assert (folder / "upload.zip").read_bytes() == data
    assert (folder / "files" / "users.csv").read_bytes() == USERS
    assert (folder / "files" / "message.properties").read_bytes() == MESSAGE
    record = json.loads((folder / "request.json").read_text())
    assert record["group"] == "music" and record["endpoint"] == "zip"
    assert record["client_id"] == "unit" and record["form"] == fields
    assert record["content_type"].startswith("multipart/form-data; boundary=")
    [part] = record["parts"]
    assert part["filename"] == "batch-1.zip" and part["bytes"] == len(data)
    assert part["sha256"] == hashlib.sha256(data).hexdigest()
    assert [(f["entry"], f["kind"]) for f in record["files"]] == [
        ("export/users.csv", "users"),
        ("message.properties", "properties"),
    ]
    assert all(token.encode() not in path.read_bytes() for path in folder.rglob("*.*"))


def test_upload_files_endpoint_keeps_each_part(sandbox: Sandbox) -> None:
    parts = [("users.csv", USERS), ("enrollments.csv", ENROLLMENTS)]
    answer = upload(sandbox, get_token(sandbox), parts, endpoint="files")
    assert answer.status_code == 200
    [folder] = sandbox.uploads()
    assert not (folder / "upload.zip").exists()
    assert (folder / "files" / "users.csv").read_bytes() == USERS
    assert (folder / "files" / "enrollments.csv").read_bytes() == ENROLLMENTS
    record = json.loads((folder / "request.json").read_text())
    assert record["endpoint"] == "files"
    assert [p["stored_as"] for p in record["parts"]] == ["files/users.csv", "files/enrollments.csv"]


def test_uploads_are_numbered_in_arrival_order_across_restarts(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    assert upload_zip(sandbox, {"u.csv": USERS}, group="music").ok
    assert upload_zip(sandbox, {"u.csv": USERS}, group="art").ok
    sandbox.stop()
    with Sandbox(sandbox.store, clients={CLIENT[0]: CLIENT[1]}) as again:
        assert upload_zip(again, {"u.csv": USERS}, group="music").ok
        names = [path.name for path in again.uploads()]
    assert names == ["000001-music", "000002-art", "000003-music"]


def test_sandbox_uploads_and_health_endpoints(sandbox: Sandbox) -> None:
    assert upload_zip(sandbox, {"u.csv": USERS}).ok
    health = requests.get(f"{sandbox.url}/_sandbox/health", timeout=TIMEOUT)
    assert health.status_code == 200
    listing = requests.get(f"{sandbox.url}/_sandbox/uploads", timeout=TIMEOUT).json()
    assert [entry["upload"] for entry in listing] == ["000001-music"]


def test_chunked_upload_is_read_whole(sandbox: Sandbox) -> None:
    data = zip_of({"users.csv": USERS})
    boundary = "dropd-test-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="deptFileUpload"; '
        f'filename="batch.zip"\r\nContent-Type: application/zip\r\n\r\n'
    ).encode()
    chunks = iter([head, data[:50], data[50:], f"\r\n--{boundary}--\r\n".encode()])
    headers = {
        "Authorization": f"Bearer {get_token(sandbox)}",
        "Content-Type": f"multipart/form-data; boundary={boundary}",
    }
    url = f"{sandbox.url}/rest/upload/music/zip"
    answer = requests.post(url, data=chunks, headers=headers, timeout=TIMEOUT)
    assert answer.status_code == 200, answer.text
    assert (sandbox.uploads()[0] / "upload.zip").read_bytes() == data


def test_log_lines_name_requests_but_never_a_secret_or_token(
    sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    token = get_token(sandbox)
    assert upload_ok(sandbox, token)
    err = capsys.readouterr().err
    assert "sandbox: POST /oauth/token 200" in err
    assert "sandbox: POST /rest/upload/music/zip 200 (000001-music)" in err
    assert token not in err and CLIENT[1] not in err


# The server's 400, 403 and 500 answers


@pytest.mark.parametrize(
    "data", [zip_of({}), b"not a zip at all", zip_of({"empty/": b"", "__MACOSX/._u.csv": b"x"})]
)
def test_upload_zip_without_files_is_no_files_to_process(sandbox: Sandbox, data: bytes) -> None:
    answer = upload(sandbox, get_token(sandbox), [("batch.zip", data)])
    assert answer.status_code == 400
    assert answer.json() == {"message": "No files to process", "fileErrors": None}
    assert sandbox.uploads() == []


@pytest.mark.parametrize(
    "data",
    [
        zip_of({"users.csv": USERS * 50})[:-80],  # truncated in its last entry
        zip_of({"../users.csv": USERS}),
        zip_of({"users.csv": USERS}, method=zipfile.ZIP_BZIP2),  # Java reads no bzip2
    ],
)
def test_upload_unreadable_zip_is_unable_to_unzip(sandbox: Sandbox, data: bytes) -> None:
    answer = upload(sandbox, get_token(sandbox), [("batch.zip", data)])
    assert answer.status_code == 400
    assert answer.json() == {"message": "Unable to unzip uploaded file", "fileErrors": None}


@pytest.mark.parametrize(
    "name, data",
    [
        ("users.csv", b"\xef\xbb\xbf" + USERS),  # a byte-order mark
        ("users.csv", USERS.replace(b"user_id", b"User_id")),
        ("users.csv", USERS.replace(b"login_id,", b"login_id, ")),
        ("users.csv", b"user_id,login_id,first_name,last_name,short_name,email,status\n"),
        ("users.csv.done", b""),
        ("notes.txt", b"hello\n"),
        ("users.csv", USERS + b'u2,"unterminated\n'),  # opencsv fails the whole file
        ("__MACOSX/export/._users.csv", b"\x00\x05\x16\x07"),  # only a direct child is skipped
    ],
)
def test_upload_unknown_file_is_error_parsing_uploaded_files(
    sandbox: Sandbox, name: str, data: bytes
) -> None:
    answer = upload_zip(sandbox, {"enrollments.csv": ENROLLMENTS, name: data})
    base = name.rsplit("/", 1)[-1]
    assert answer.status_code == 400
    assert answer.json() == {
        "message": "Error parsing uploaded files",
        "fileErrors": [
            {
                "title": f"The format of {base} did not conform to any of the documented formats.",
                "description": f"No files will be processed. Correct {base} and try again.",
            }
        ],
    }


@pytest.mark.parametrize(
    "header",
    [
        b"user_id,login_id,first_name,last_name,email,status,service",
        b'"user_id","login_id","first_name","last_name","email","status"',
        b"course_id,short_name,long_name,account_id,term_id,status,end_date",
        b"course_id,short_name,long_name,account_id,status,start_date,blueprint_course_id",
        b"section_id,course_id,name,status,start_date,end_date",
        b"course_id,user_id,role,section_id,status,limit_section_privileges",
        b"user_id,listing_id,send_email",
    ],
)
def test_upload_known_headers_are_accepted(sandbox: Sandbox, header: bytes) -> None:
    answer = upload_zip(sandbox, {"any-name.csv": header + b"\r\n"})
    assert answer.status_code == 200, answer.text


def test_notification_without_users_file_is_a_file_error(sandbox: Sandbox) -> None:
    files = {"enrollments.csv": ENROLLMENTS, "message.properties": MESSAGE}
    answer = upload_zip(sandbox, files, fields={"customUsersNotification": "true"})
    assert answer.status_code == 400
    body = answer.json()
    assert body["message"] == "Error parsing uploaded files"
    assert body["fileErrors"][0]["title"] == "No files found that match the 'users' format"


@pytest.mark.parametrize(
    "files",
    [
        {"users.csv": USERS},
        {"users.csv": USERS, "message.properties": MESSAGE.replace(b"body=Hello", b"body=  ")},
        {"users.csv": USERS, "message.properties": b"sender=a@b.c\nsubject=Hi\n"},
    ],
)
def test_notification_without_valid_properties_is_400(
    sandbox: Sandbox, files: dict[str, bytes]
) -> None:
    answer = upload_zip(sandbox, files, fields={"customUsersNotification": "true"})
    assert answer.status_code == 400
    assert answer.json() == {"message": sandbox_checks.NOTIFICATION_INVALID, "fileErrors": None}


def test_notification_with_users_and_properties_is_accepted(sandbox: Sandbox) -> None:
    files = {"users.csv": USERS, "Message.Properties": MESSAGE}
    answer = upload_zip(sandbox, files, fields={"customUsersNotification": "true"})
    assert answer.status_code == 200, answer.text


def test_properties_with_bad_unicode_escape_is_a_500(sandbox: Sandbox) -> None:
    broken = MESSAGE + b"footer=\\u00zz\n"
    answer = upload_zip(sandbox, {"users.csv": USERS, "message.properties": broken})
    assert answer.status_code == 500
    assert answer.json()["error"] == "Internal Server Error"


def test_properties_are_read_as_java_reads_them() -> None:
    text = (
        b"# a comment\n! another\n  Sender : noreply@example.edu\n"
        b"subject Caf\xe9 \\u00e9t\\u00E9\n"
        b"body = first line \\\n     second line\\n\\tend\n"
    )
    assert sandbox_checks.read_properties(text) == {
        "sender": "noreply@example.edu",
        "subject": "Café été",
        "body": "first line second line\n\tend",
    }


def test_group_not_allowed_is_403_after_the_no_files_check(tmp_path: Path) -> None:
    clients = {CLIENT[0]: CLIENT[1]}
    with Sandbox(tmp_path, clients=clients, allowed_groups={"music"}) as sandbox:
        refused = upload_zip(sandbox, {"bad.txt": b"x"}, group="art")
        empty = upload(sandbox, get_token(sandbox), [("b.zip", zip_of({}))], group="art")
        allowed = upload_zip(sandbox, {"users.csv": USERS}, group="music")
    assert refused.status_code == 403
    assert refused.json() == {
        "message": "User (unit) is not authorized to upload files",
        "fileErrors": None,
    }
    assert empty.json()["message"] == "No files to process"
    assert allowed.status_code == 200


# The size limit of the server's framework (--max-upload-bytes)


def test_upload_over_max_upload_bytes_is_springs_413_and_is_not_kept(tmp_path: Path) -> None:
    clients = {CLIENT[0]: CLIENT[1]}
    big = zip_of({"users.csv": USERS * 40}, zipfile.ZIP_STORED)
    with Sandbox(tmp_path / "store", clients=clients, max_upload_bytes=len(big)) as sandbox:
        token = get_token(sandbox)
        over = upload(sandbox, token, [("b.zip", big)])  # the form's own bytes come on top
        under = upload_zip(sandbox, {"users.csv": USERS})
        unauthorized = upload(sandbox, None, [("b.zip", big)])
        kept = sandbox.uploads()
    assert over.status_code == 413
    body = over.json()
    assert set(body) == {"timestamp", "status", "error", "path"}
    assert body["status"] == 413 and body["error"] == "Payload Too Large"
    assert body["path"] == "/rest/upload/music/zip"
    assert under.status_code == 200
    assert unauthorized.status_code == 401, "the token is checked before the size"
    assert len(kept) == 1


def test_upload_at_exactly_max_upload_bytes_is_accepted(tmp_path: Path) -> None:
    clients = {CLIENT[0]: CLIENT[1]}
    prepared = requests.Request(
        "POST", "http://h/", files=[("deptFileUpload", ("b.zip", zip_of({"users.csv": USERS})))]
    ).prepare()
    body = prepared.body
    assert isinstance(body, bytes)
    with Sandbox(tmp_path / "store", clients=clients, max_upload_bytes=len(body)) as sandbox:
        headers = {
            "Authorization": f"Bearer {get_token(sandbox)}",
            "Content-Type": prepared.headers["Content-Type"],
        }
        url = f"{sandbox.url}/rest/upload/music/zip"
        at_limit = requests.post(url, data=body, headers=headers, timeout=TIMEOUT)
        one_more = requests.post(url, data=body + b"\r\n", headers=headers, timeout=TIMEOUT)
    assert at_limit.status_code == 200, at_limit.text
    assert one_more.status_code == 413


def test_without_max_upload_bytes_there_is_no_limit(sandbox: Sandbox) -> None:
    assert sandbox.provider.max_upload_bytes is None
    rows = b"u2,x,A,B,x@example.edu,active\r\n" * 40000
    big = zip_of({"users.csv": USERS + rows}, zipfile.ZIP_STORED)
    assert len(big) > 1 << 20, "over Spring Boot's default of 1 MB a file"
    assert upload(sandbox, get_token(sandbox), [("b.zip", big)]).status_code == 200


@pytest.mark.parametrize(
    "parts, fields",
    [([], {"customUsersNotification": "true"}), ([("other", b"x")], {})],
)
def test_request_without_file_part_is_springs_400(
    sandbox: Sandbox, parts: list[tuple[str, bytes]], fields: dict[str, str]
) -> None:
    headers = {"Authorization": f"Bearer {get_token(sandbox)}"}
    url = f"{sandbox.url}/rest/upload/music/zip"
    files = [("notTheField", part) for part in parts] or None
    answer = requests.post(url, files=files, data=fields, headers=headers, timeout=TIMEOUT)
    assert answer.status_code == 400
    assert answer.json()["status"] == 400
    assert answer.json()["path"] == "/rest/upload/music/zip"


# Scripted answers


def test_scripted_status_is_played_once_before_any_check(sandbox: Sandbox) -> None:
    sandbox.script([{"status": 503, "body": {"message": "down for maintenance"}}])
    first = upload(sandbox, None, [("b.zip", b"")])
    assert first.status_code == 503
    assert first.json() == {"message": "down for maintenance"}
    assert upload(sandbox, None, [("b.zip", b"")]).status_code == 401


def test_scripted_429_sets_retry_after(sandbox: Sandbox) -> None:
    sandbox.script([{"status": 429, "retry_after": "2", "headers": {"X-Why": "busy"}}])
    answer = upload(sandbox, None, [("b.zip", b"")])
    assert answer.status_code == 429
    assert answer.headers["Retry-After"] == "2" and answer.headers["X-Why"] == "busy"
    assert answer.json()["status"] == 429  # Spring's error body when none is scripted


def test_scripted_400_with_body_and_502_html_page(sandbox: Sandbox) -> None:
    body = {"message": "Error parsing uploaded files", "fileErrors": [{"title": "t"}]}
    sandbox.script([{"status": 400, "body": body}, {"status": 502, "html": True}])
    assert upload(sandbox, None, [("b.zip", b"")]).json() == body
    page = upload(sandbox, None, [("b.zip", b"")])
    assert page.status_code == 502
    assert page.headers["Content-Type"] == "text/html"
    assert "<h1>502 Bad Gateway</h1>" in page.text


def test_scripted_html_page_takes_the_title_given(sandbox: Sandbox) -> None:
    sandbox.script([{"status": 200, "html": True, "title": "Sign in <Campus & SSO>"}])
    page = upload(sandbox, None, [("b.zip", b"")])
    assert page.status_code == 200
    assert page.headers["Content-Type"] == "text/html"
    assert "<title>Sign in &lt;Campus &amp; SSO&gt;</title>" in page.text
    assert sandbox.uploads() == []


def test_scripted_empty_body_is_sent_with_content_length_0(sandbox: Sandbox) -> None:
    sandbox.script([{"status": 200, "body": ""}])
    address = ("127.0.0.1", urlsplit(sandbox.url).port or 0)
    with socket.create_connection(address, timeout=TIMEOUT) as raw:
        raw.sendall(b"POST /rest/upload/music/zip HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        raw.sendall(b"GET /_sandbox/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        received = b""
        while chunk := raw.recv(65536):
            received += chunk
    first, second = received.split(b"HTTP/1.1 ", 2)[1:]
    head, _, body = first.partition(b"\r\n\r\n")
    assert head.startswith(b"200 OK") and b"\r\nContent-Length: 0" in head
    assert body == b"", "nothing between the empty answer and the next one"
    assert second.startswith(b"200 OK")


def test_scripted_redirect_sets_an_absolute_location(sandbox: Sandbox) -> None:
    elsewhere = "https://login.example.edu/sso"
    sandbox.script(
        [
            {"status": 302, "location": "/_sandbox/elsewhere"},
            {"status": 307, "location": elsewhere, "headers": {"X-Proxy": "campus"}},
        ]
    )
    url = f"{sandbox.url}/rest/upload/music/zip"
    files = {"deptFileUpload": ("b.zip", b"")}
    relative = requests.post(url, files=files, allow_redirects=False, timeout=TIMEOUT)
    absolute = requests.post(url, files=files, allow_redirects=False, timeout=TIMEOUT)
    assert relative.status_code == 302
    assert relative.headers["Location"] == f"{sandbox.url}/_sandbox/elsewhere"
    assert relative.content == b""
    assert absolute.status_code == 307 and absolute.headers["Location"] == elsewhere
    assert absolute.headers["X-Proxy"] == "campus"
    assert sandbox.elsewhere.hits == 0


def test_elsewhere_counts_every_visit_and_tells_the_count(sandbox: Sandbox) -> None:
    hits = f"{sandbox.url}/_sandbox/elsewhere/hits"
    assert requests.get(hits, timeout=TIMEOUT).json() == {"hits": 0}
    sandbox.script([{"status": 303, "location": "/_sandbox/elsewhere"}])
    followed = requests.post(f"{sandbox.url}/rest/upload/music/zip", data=b"x", timeout=TIMEOUT)
    assert followed.status_code == 200 and followed.url == f"{sandbox.url}/_sandbox/elsewhere"
    assert "<title>Elsewhere</title>" in followed.text
    assert followed.headers["Content-Type"] == "text/html"
    assert requests.post(f"{sandbox.url}/_sandbox/elsewhere", data=b"x", timeout=TIMEOUT).ok
    assert requests.get(hits, timeout=TIMEOUT).json() == {"hits": 2}
    assert sandbox.elsewhere.hits == 2


def test_scripted_echo_authorization_puts_the_header_in_the_message(sandbox: Sandbox) -> None:
    body = {"message": "ignored", "fileErrors": [{"title": "t"}]}
    sandbox.script(
        [
            {"status": 400, "echo_authorization": True},
            {"status": 403, "body": body, "echo_authorization": True},
        ]
    )
    token = get_token(sandbox)
    plain = upload(sandbox, token, [("b.zip", b"")])
    merged = upload(sandbox, token, [("b.zip", b"")])
    assert plain.status_code == 400
    assert plain.json() == {"message": f"bad request from Bearer {token}", "fileErrors": None}
    assert merged.status_code == 403
    assert merged.json() == {
        "message": f"forbidden from Bearer {token}",
        "fileErrors": [{"title": "t"}],
    }


def test_scripted_echo_authorization_on_the_token_endpoint(sandbox: Sandbox) -> None:
    sandbox.script([{"endpoint": "token", "status": 400, "echo_authorization": True}])
    answer = requests.post(sandbox.token_url, auth=CLIENT, timeout=TIMEOUT)
    assert answer.status_code == 400
    assert answer.json()["message"].startswith("bad request from Basic ")


def test_scripted_reset_closes_without_an_answer(sandbox: Sandbox) -> None:
    sandbox.script([{"reset": True}])
    with pytest.raises(requests.ConnectionError, match="reset by peer"):  # a reset, not a close
        upload(sandbox, get_token(sandbox), [("b.zip", zip_of({"u.csv": USERS}))])
    assert sandbox.uploads() == []
    assert upload_ok(sandbox, get_token(sandbox))


def test_scripted_hang_makes_the_client_time_out(sandbox: Sandbox) -> None:
    sandbox.script([{"hang": 60}])
    url = f"{sandbox.url}/rest/upload/music/zip"
    with pytest.raises(requests.ReadTimeout):
        requests.post(url, files={"deptFileUpload": ("b.zip", b"")}, timeout=(TIMEOUT, 0.3))
    assert upload_ok(sandbox, get_token(sandbox))  # the hang holds up no other request


def test_get_on_the_upload_path_is_401_without_a_token_and_405_with_one(
    sandbox: Sandbox,
) -> None:
    url = f"{sandbox.url}/rest/upload/music/zip"
    assert requests.get(url, timeout=TIMEOUT).status_code == 401
    bearer = {"Authorization": f"Bearer {get_token(sandbox)}"}
    answer = requests.get(url, headers=bearer, timeout=TIMEOUT)
    assert answer.status_code == 405 and answer.headers["Allow"] == "POST"
    assert requests.get(f"{sandbox.url}/rest/nowhere", timeout=TIMEOUT).status_code == 404
    assert sandbox.uploads() == []


def test_scripted_pause_delays_then_serves_as_usual(sandbox: Sandbox) -> None:
    sandbox.script([{"pause": 0.5}])
    started = time.monotonic()
    assert upload_ok(sandbox, get_token(sandbox))
    assert time.monotonic() - started >= 0.5
    assert len(sandbox.uploads()) == 1  # kept, as an unscripted upload is


def test_scripted_token_answers_have_their_own_queue(sandbox: Sandbox) -> None:
    sandbox.script([{"status": 503, "endpoint": "token"}])
    token_answer = requests.post(sandbox.token_url, auth=CLIENT, timeout=TIMEOUT)
    assert token_answer.status_code == 503
    assert upload_ok(sandbox, get_token(sandbox))


def test_script_over_http_queues_and_rejects_bad_answers(sandbox: Sandbox) -> None:
    url = f"{sandbox.url}/_sandbox/script"
    bad = requests.post(url, json=[{"status": 503}, {"hang": -1}], timeout=TIMEOUT)
    assert bad.status_code == 400 and "hang" in bad.json()["error"]
    good = requests.post(url, json=[{"status": 503}, {"reset": True, "endpoint": "token"}])
    assert good.json() == {"queued": {"upload": 1, "token": 1}}
    assert upload(sandbox, None, [("b.zip", b"")]).status_code == 503


@pytest.mark.parametrize(
    "answer",
    [
        *({"status": 99}, {"status": 503, "hang": 1}, {}, {"reset": False}),
        *({"status": 503, "x": 1}, {"pause": -1}, {"pause": 1, "hang": 1}),
        *({"status": 200, "html": True, "title": 7}, {"status": 200, "title": "no html"}),
        *({"status": 302, "location": ["/x"]}, {"hang": 1, "location": "/x"}),
        *(
            {"status": 400, "echo_authorization": "yes"},
            {"reset": True, "echo_authorization": True},
        ),
        *({"status": 400, "html": True, "echo_authorization": True},),
        *({"status": 400, "body": "text", "echo_authorization": True},),
        *({"status": 503, "headers": ["X-Why"]}, {"status": 503, "headers": None}),
    ],
)
def test_script_rejects_malformed_answers(sandbox: Sandbox, answer: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="scripted answer"):
        sandbox.script([{"status": 503}, answer])
    assert upload(sandbox, None, [("b.zip", b"")]).status_code == 401  # nothing was queued


# Life cycle and the command line


def test_url_before_start_raises(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        _ = Sandbox(tmp_path).url


def test_stop_drops_kept_alive_connections(sandbox: Sandbox) -> None:
    with requests.Session() as session:
        health = f"{sandbox.url}/_sandbox/health"
        assert session.get(health, timeout=TIMEOUT).ok
        sandbox.stop()
        with pytest.raises(requests.ConnectionError):
            session.get(health, timeout=TIMEOUT)


def first_line(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], TIMEOUT)
    assert ready, "the sandbox printed nothing"
    return process.stdout.readline()


def sandbox_command(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "daemon", "sandbox", *arguments]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_cli_prints_its_address_serves_and_exits_0_on_signal(
    tmp_path: Path, signum: signal.Signals
) -> None:
    store = tmp_path / "store"
    command = sandbox_command("--port", "0", "--store", str(store), "--client", "unit:s3cret")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = first_line(process)
        pattern = r"dropd sandbox listening on (http://127\.0\.0\.1:\d+) token_url=(\S+) store=(.+)"
        match = re.fullmatch(pattern, line.rstrip("\n"))
        assert match, line
        url, token_url, shown_store = match.groups()
        assert token_url == url + "/oauth/token" and shown_store == str(store.resolve())
        assert requests.get(url + "/_sandbox/health", timeout=TIMEOUT).ok
        data = {"grant_type": "client_credentials"}
        assert requests.post(token_url, data=data, auth=CLIENT, timeout=TIMEOUT).ok
        process.send_signal(signum)
        _, err = process.communicate(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0
    assert "POST /oauth/token 200" in err and "s3cret" not in err


def test_cli_port_in_use_exits_1_with_a_reason(sandbox: Sandbox, tmp_path: Path) -> None:
    port = sandbox.url.rsplit(":", 1)[1]
    command = sandbox_command("--port", port, "--store", str(tmp_path / "other"))
    result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert result.returncode == 1
    assert f"cannot serve on 127.0.0.1:{port}" in result.stderr and result.stdout == ""


def test_cli_max_upload_bytes_answers_413_above_it(tmp_path: Path) -> None:
    command = sandbox_command(
        "--port", "0", "--store", str(tmp_path / "store"), "--client", "unit:s3cret",
        "--max-upload-bytes", "2000",
    )  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", first_line(process))
        assert match
        url = match.group(1)
        data = {"grant_type": "client_credentials"}
        token = requests.post(url + "/oauth/token", data=data, auth=CLIENT, timeout=TIMEOUT)
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        files = [("deptFileUpload", ("b.zip", b"PK" + bytes(3000)))]
        answer = requests.post(
            url + "/rest/upload/music/zip", files=files, headers=headers, timeout=TIMEOUT
        )
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert answer.status_code == 413 and answer.json()["status"] == 413
    assert "uploads over 2,000 bytes are answered 413" in err
    assert "POST /rest/upload/music/zip 413" in err


@pytest.mark.parametrize("value", ["0", "-5", "1MB"])
def test_cli_max_upload_bytes_must_be_a_positive_whole_number(tmp_path: Path, value: str) -> None:
    command = sandbox_command("--store", str(tmp_path), "--max-upload-bytes", value)
    result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert result.returncode == 2
    assert "--max-upload-bytes" in result.stderr and "1 or more" in result.stderr


def test_cli_help_says_max_upload_bytes_has_no_limit_by_default() -> None:
    result = subprocess.run(
        sandbox_command("--help"), capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert "--max-upload-bytes N" in result.stdout
    assert "default: no limit" in " ".join(result.stdout.split())


def test_cli_client_without_colon_exits_2_without_echoing_it(tmp_path: Path) -> None:
    command = sandbox_command("--port", "0", "--store", str(tmp_path), "--client", "hunter2")
    result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert result.returncode == 2
    assert "ID:SECRET" in result.stderr and "hunter2" not in result.stderr
