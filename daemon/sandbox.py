"""`dropd sandbox`: a local stand-in of the provider's token and upload API on 127.0.0.1.

Uploads are judged as the real server judges them (`sandbox_checks`); each accepted one is
kept in the store, in arrival order:

    STORE/000001-GROUP/request.json   group, endpoint, path, client, time, form, parts, files
    STORE/000001-GROUP/upload.zip     the ZIP part, byte for byte (zip endpoint only)
    STORE/000001-GROUP/files/NAME     each file the server reads, byte for byte

Scripted answers make it misbehave; each is played instead of the next request to its
endpoint (`"endpoint": "token"`, else the upload endpoints), before any check:

    {"status": 503, "body": {...} or "text", "headers": {...}}   an answer (default body:
    {"status": 429, "retry_after": "2"}                           Spring's error JSON)
    {"status": 502, "html": true}                                 a proxy's HTML page
    {"hang": 30}                                                  no answer for 30 s, then close
    {"reset": true}                                               a TCP reset, no answer
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import functools
import hashlib
import hmac
import json
import re
import secrets
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, unquote_plus, urlsplit

from daemon import sandbox_checks
from daemon.sandbox_checks import ReceivedFile, UploadForm, Verdict

DEFAULT_CLIENTS = {"dropd-demo": "demo-secret"}
_UPLOAD_ROUTE = re.compile(r"/rest/upload/(?P<group>[^/]+)(?P<zip>/zip)?")
_UPLOAD_FOLDER = re.compile(r"(?P<number>\d{6,})-.+")
_ANSWER_KEYS = {"status", "body", "headers", "retry_after", "html", "hang", "reset", "endpoint"}
_BAD_CLIENT = {"error": "invalid_client", "error_description": "Bad client credentials"}
_NO_TOKEN = {
    "error": "unauthorized",
    "error_description": "Full authentication is required to access this resource",
}
_RFC6750 = "https://tools.ietf.org/html/rfc6750#section-3.1"
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_PROXY_PAGE = (
    "<html>\r\n<head><title>{0}</title></head>\r\n<body>\r\n<center><h1>{0}</h1></center>\r\n"
    "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds")


def _checked_answer(answer: object) -> dict[str, Any]:
    """Return a scripted answer once it is known to be playable; raises ValueError if not."""
    if not isinstance(answer, dict):
        raise ValueError(f"a scripted answer must be a JSON object, got {answer!r}")
    problem = ""
    status, hang = answer.get("status", 200), answer.get("hang", 0)
    if unknown := sorted(set(answer) - _ANSWER_KEYS):
        problem = f"unknown keys {unknown}"
    elif sum(key in answer for key in ("status", "hang", "reset")) != 1:
        problem = "give exactly one of status, hang, reset"
    elif isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        problem = "status must be an HTTP code, 100 to 599"
    elif isinstance(hang, bool) or not isinstance(hang, int | float) or hang < 0:
        problem = "hang must be a number of seconds, 0 or more"
    elif answer.get("reset", True) is not True:
        problem = "reset must be true"
    elif answer.get("endpoint", "upload") not in ("upload", "token"):
        problem = "endpoint must be 'upload' or 'token'"
    if problem:
        raise ValueError(f"scripted answer {answer!r}: {problem}")
    return answer


@dataclass(slots=True)
class _Grant:
    client_id: str
    expires_at: float
    revoked: bool = False


def _digest(data: bytes) -> dict[str, Any]:
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _stored_names(files: list[ReceivedFile]) -> list[str]:
    """A path under `files/` for each file, unique even where a ZIP repeats a name."""
    names: list[str] = []
    for index, file in enumerate(files, start=1):
        base = re.split(r"[/\\]", file.name)[-1].strip()
        base = f"file-{index}" if base in ("", ".", "..") else base
        name, copy = base, 1
        while f"files/{name}" in names:
            copy += 1
            name = f"{copy}-{base}"
        names.append(f"files/{name}")
    return names


def _upload_record(
    folder: str,
    request: dict[str, Any],
    form: UploadForm,
    files: list[ReceivedFile],
    verdict: Verdict,
    names: list[str],
) -> dict[str, Any]:
    """The content of `request.json`: what came, where it is kept, and the answer."""
    part_names = ["upload.zip"] if request["endpoint"] == "zip" else names
    parts = [
        {"filename": part.filename, "content_type": part.content_type, **_digest(part.data)}
        for part in form.parts
    ]
    kept = [
        {"name": file.name, "entry": file.entry, "kind": kind, **_digest(file.data)}
        for file, kind in zip(files, verdict.kinds, strict=True)
    ]
    for entry, name in zip([*parts, *kept], [*part_names, *names], strict=True):
        entry["stored_as"] = name
    record = {"upload": folder, **request, "form": form.fields, "parts": parts, "files": kept}
    return record | {"answer": verdict.body()}


class Sandbox:
    """The provider's API on 127.0.0.1, serving from a background thread."""

    def __init__(
        self,
        store: Path,
        port: int = 0,
        clients: Mapping[str, str] | None = None,
        token_lifetime: float = 3600.0,
        clock: Callable[[], float] = time.time,
        allowed_groups: set[str] | None = None,
    ) -> None:
        self.store = Path(store).resolve()
        self.port = port
        self.clients = dict(DEFAULT_CLIENTS if clients is None else clients)
        self.token_lifetime = token_lifetime
        self.clock = clock
        self.allowed_groups = allowed_groups
        self._lock = threading.Lock()
        self._tokens: dict[str, _Grant] = {}
        self._answers: dict[str, list[dict[str, Any]]] = {"upload": [], "token": []}
        self._count = 0
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL, `http://127.0.0.1:PORT`; raises RuntimeError before start()."""
        if self._server is None:
            raise RuntimeError("the sandbox has no URL until start() is called")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def token_url(self) -> str:
        """The token endpoint's URL."""
        return self.url + "/oauth/token"

    def start(self) -> None:
        """Create the store, listen on 127.0.0.1 and serve from a daemon thread.

        Raises OSError if the store cannot be created or the port is taken, RuntimeError if
        the sandbox is serving already.
        """
        if self._server is not None:
            raise RuntimeError("the sandbox is already serving; stop() it first")
        self.store.mkdir(parents=True, exist_ok=True)
        self._count = max((int(path.name.split("-")[0]) for path in self.uploads()), default=0)
        self._stopping.clear()
        self._server = _Server(self)
        # A short poll interval: shutdown() waits for it, and tests stop many sandboxes.
        serve = functools.partial(self._server.serve_forever, poll_interval=0.05)
        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and drop every open connection, hung ones included."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def script(self, answers: list[dict[str, Any]]) -> None:
        """Queue scripted answers (see the module's docstring), each used once, in order.

        Raises ValueError if any answer is malformed; then none is queued.
        """
        checked = [_checked_answer(answer) for answer in answers]
        with self._lock:
            for answer in checked:
                self._answers[answer.get("endpoint", "upload")].append(answer)

    def revoke_tokens(self) -> None:
        """Revoke every token issued so far; requests that use one get a 401."""
        with self._lock:
            for grant in self._tokens.values():
                grant.revoked = True

    def uploads(self) -> list[Path]:
        """The folders of the accepted uploads in the store, in arrival order."""
        if not self.store.is_dir():
            return []
        found = [
            (int(match["number"]), path)
            for path in self.store.iterdir()
            if path.is_dir() and (match := _UPLOAD_FOLDER.fullmatch(path.name))
        ]
        return [path for _, path in sorted(found)]

    def _log(self, line: str) -> None:
        sys.stderr.write(f"sandbox: {line}\n")
        sys.stderr.flush()

    def _next_answer(self, endpoint: str) -> dict[str, Any] | None:
        with self._lock:
            queue = self._answers[endpoint]
            return queue.pop(0) if queue else None

    def _authenticate_client(self, authorization: str, form: dict[str, list[str]]) -> str | None:
        """The client id when the Basic header (else the form) holds a known id and secret."""
        scheme, _, value = authorization.partition(" ")
        candidates = [(form.get("client_id", [""])[0], form.get("client_secret", [""])[0])]
        if scheme.lower() == "basic":
            try:
                pair = base64.b64decode(value.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return None
            client_id, _, secret = pair.partition(":")
            # RFC 6749 form-encodes both before Basic; most clients send them raw.
            candidates = [(client_id, secret), (unquote_plus(client_id), unquote_plus(secret))]
        for client_id, secret in candidates:
            known = self.clients.get(client_id)
            if known is not None and hmac.compare_digest(known.encode(), secret.encode()):
                return client_id
        return None

    def _issue_token(self, client_id: str) -> dict[str, Any]:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = _Grant(client_id, self.clock() + self.token_lifetime)
        return {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": int(self.token_lifetime),
            "scope": "read write",
            "jti": uuid.uuid4().hex,
        }

    def _bearer_client(self, authorization: str) -> tuple[str | None, str]:
        """The client id of a usable bearer token, else None and why ("" when none came)."""
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None, ""
        with self._lock:
            grant = self._tokens.get(token.strip())
        if grant is None:
            return None, "Invalid access token"
        if grant.revoked:
            return None, "Access token has been revoked"
        if self.clock() >= grant.expires_at:
            return None, "Access token expired"
        return grant.client_id, ""

    def _keep(
        self, request: dict[str, Any], form: UploadForm, files: list[ReceivedFile], verdict: Verdict
    ) -> Path:
        """Write an accepted upload to its numbered folder; a rename makes it appear whole."""
        with self._lock:
            self._count += 1
            group = re.sub(r"[^A-Za-z0-9._-]", "_", request["group"])[:64]
            folder = self.store / f"{self._count:06d}-{group}"
            staging = self.store / f".incoming-{folder.name}"
            (staging / "files").mkdir(parents=True)
            names = _stored_names(files)
            for file, name in zip(files, names, strict=True):
                (staging / name).write_bytes(file.data)
            if request["endpoint"] == "zip":
                (staging / "upload.zip").write_bytes(form.parts[0].data)
            record = _upload_record(folder.name, request, form, files, verdict, names)
            (staging / "request.json").write_text(json.dumps(record, indent=2) + "\n")
            staging.rename(folder)
        return folder


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", sandbox.port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, which stalls on a bad resolver.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]

    def close_connections(self) -> None:
        """Shut every open connection, so no kept-alive client reaches a stopped sandbox."""
        with self.connections_lock:
            for connection in self.connections:
                with contextlib.suppress(OSError):  # its client closed it already
                    connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "dropd-sandbox"
    timeout = 60
    server: _Server
    note = ""

    @property
    def sandbox(self) -> Sandbox:
        return self.server.sandbox

    def version_string(self) -> str:
        return self.server_version

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        super().finish()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # The path only: a query string could carry a token. A malformed request has none.
        path = urlsplit(getattr(self, "path", "")).path or "-"
        note = f" ({self.note})" if self.note else ""
        self.sandbox._log(f"{self.command or '-'} {path} {int(code)}{note}")

    def log_error(self, format: str, *args: Any) -> None:
        # Silent: send_error logs through log_request already, and the default message
        # quotes the raw request line, which could carry a token.
        pass

    def do_GET(self) -> None:
        self.note = ""
        self._read_body()
        path = urlsplit(self.path).path
        if path == "/_sandbox/health":
            self._send_json(200, {"status": "UP"})
        elif path == "/_sandbox/uploads":
            records = [(folder / "request.json").read_text() for folder in self.sandbox.uploads()]
            self._send_json(200, [json.loads(record) for record in records])
        else:
            self._send_spring_error(404)

    def do_POST(self) -> None:
        self.note = ""
        try:
            body = self._read_body()
        except ValueError:
            self.close_connection = True
            self._send_spring_error(400, "a bad Content-Length or chunk size")
            return
        path = urlsplit(self.path).path
        if match := _UPLOAD_ROUTE.fullmatch(path):
            self._upload(unquote(match["group"]), "zip" if match["zip"] else "files", body)
        elif path == "/oauth/token":
            self._token(body)
        elif path == "/_sandbox/script":
            self._script(body)
        elif path == "/_sandbox/revoke":
            self.sandbox.revoke_tokens()
            self._send_json(200, {"revoked": True})
        else:
            self._send_spring_error(404)

    def _read_body(self) -> bytes:
        """The whole request body; raises ValueError on a bad length or chunk size."""
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        chunks = []
        while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass  # trailer fields
        return b"".join(chunks)

    def _send(
        self, status: int, body: bytes, content_type: str, headers: Mapping[str, str] | None = None
    ) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_json(
        self, status: int, payload: object, headers: Mapping[str, str] | None = None
    ) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", headers)

    def _spring_error(self, status: int) -> dict[str, Any]:
        """The body Spring Boot sends for an error no controller answered."""
        return {
            "timestamp": _iso(self.sandbox.clock()),
            "status": status,
            "error": _phrase(status),
            "path": urlsplit(self.path).path,
        }

    def _send_spring_error(self, status: int, note: str = "") -> None:
        self.note = note
        self._send_json(status, self._spring_error(status))

    def _play(self, answer: dict[str, Any]) -> None:
        """Answer as scripted: a status and body, a hang, or a reset connection."""
        path = urlsplit(self.path).path
        self.close_connection = "status" not in answer
        if answer.get("reset"):
            self.sandbox._log(f"{self.command} {path} reset (scripted)")
            # With linger 0, close() sends a TCP reset instead of an orderly end.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.rfile.close()  # the file holds a reference that would keep the socket open
            self.connection.close()
        elif "hang" in answer:
            self.sandbox._log(f"{self.command} {path} hang {answer['hang']}s (scripted)")
            self.sandbox._stopping.wait(float(answer["hang"]))
        else:
            self._send_scripted(int(answer["status"]), answer)

    def _send_scripted(self, status: int, answer: dict[str, Any]) -> None:
        headers = {str(name): str(value) for name, value in answer.get("headers", {}).items()}
        if "retry_after" in answer:
            headers["Retry-After"] = str(answer["retry_after"])
        body = answer.get("body")
        self.note = "scripted"
        if answer.get("html"):
            page = _PROXY_PAGE.format(f"{status} {_phrase(status)}")
            self._send(status, page.encode(), "text/html", headers)
        elif isinstance(body, str):
            self._send(status, body.encode(), "text/plain; charset=utf-8", headers)
        elif body is not None:
            self._send_json(status, body, headers)
        elif status >= 400:
            self._send_json(status, self._spring_error(status), headers)
        else:
            self._send(status, b"", "text/plain", headers)

    def _token(self, body: bytes) -> None:
        if answer := self.sandbox._next_answer("token"):
            self._play(answer)
            return
        form = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
        client_id = self.sandbox._authenticate_client(self.headers.get("Authorization", ""), form)
        grant_type = form.get("grant_type", [""])[0]
        if client_id is None:
            self._send_json(401, _BAD_CLIENT, {"WWW-Authenticate": 'Basic realm="dropd sandbox"'})
        elif not grant_type:
            problem = {"error": "invalid_request", "error_description": "Missing grant type"}
            self._send_json(400, problem)
        elif grant_type != "client_credentials":
            why = f"Unsupported grant type: {grant_type}"
            self._send_json(400, {"error": "unsupported_grant_type", "error_description": why})
        else:
            self._send_json(200, self.sandbox._issue_token(client_id), _NO_STORE)

    def _send_unauthorized(self, problem: str) -> None:
        """A 401 with Spring Security's WWW-Authenticate header and an OAuth2 JSON body."""
        if not problem:
            self._send_json(401, _NO_TOKEN, {"WWW-Authenticate": "Bearer"})
            return
        header = (
            f'Bearer error="invalid_token", error_description="{problem}", error_uri="{_RFC6750}"'
        )
        body = {"error": "invalid_token", "error_description": problem}
        self._send_json(401, body, {"WWW-Authenticate": header})

    def _upload(self, group: str, endpoint: str, body: bytes) -> None:
        if answer := self.sandbox._next_answer("upload"):
            self._play(answer)
            return
        client_id, problem = self.sandbox._bearer_client(self.headers.get("Authorization", ""))
        if client_id is None:
            self._send_unauthorized(problem)
            return
        allowed, content_type = self.sandbox.allowed_groups, self.headers.get("Content-Type", "")
        refused = client_id if allowed is not None and group not in allowed else None
        try:
            form = sandbox_checks.read_form(endpoint, content_type, body, urlsplit(self.path).query)
            verdict, files = sandbox_checks.judge_upload(endpoint, form, refused)
        except sandbox_checks.RequestError as exc:
            self._send_spring_error(exc.status, exc.reason)
            return
        self.note = verdict.note or (verdict.message if verdict.status != 200 else "")
        if verdict.status == 200:
            request = {"group": group, "endpoint": endpoint, "path": urlsplit(self.path).path}
            request |= {"received_at": _iso(self.sandbox.clock()), "client_id": client_id}
            request |= {"content_type": content_type}
            try:
                self.note = self.sandbox._keep(request, form, files, verdict).name
            except OSError as exc:
                self._send_spring_error(500, f"cannot keep the upload in the store: {exc}")
                return
        self._send_json(verdict.status, verdict.body())

    def _script(self, body: bytes) -> None:
        try:
            answers = json.loads(body or b"[]")
            self.sandbox.script(answers if isinstance(answers, list) else [answers])
        except ValueError as exc:  # a json.JSONDecodeError is a ValueError too
            self._send_json(400, {"error": str(exc)})
            return
        with self.sandbox._lock:
            queued = {name: len(queue) for name, queue in self.sandbox._answers.items()}
        self._send_json(200, {"queued": queued})


def _parse_clients(pairs: list[str] | None) -> dict[str, str] | None:
    if pairs is None:
        return dict(DEFAULT_CLIENTS)
    clients = {}
    for pair in pairs:
        client_id, colon, secret = pair.partition(":")
        if not colon or not client_id:
            # Never echo the value: it may be a secret typed without its id.
            print("dropd sandbox: --client takes ID:SECRET, e.g. my-unit:s3cret", file=sys.stderr)
            return None
        clients[client_id] = secret
    return clients


def main(args: argparse.Namespace) -> int:
    """Run `dropd sandbox` until SIGINT or SIGTERM; return the exit code."""
    clients = _parse_clients(args.client)
    if clients is None:
        return 2
    sandbox = Sandbox(args.store, args.port, clients, token_lifetime=args.token_lifetime)
    try:
        sandbox.start()
    except OSError as exc:
        where = f"127.0.0.1:{args.port} with store {sandbox.store}"
        print(
            f"dropd sandbox: cannot serve on {where}: {exc}; pick another --port or --store",
            file=sys.stderr,
        )
        return 1
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda _signum, _frame: stop.set())
    where = f"{sandbox.url} token_url={sandbox.token_url} store={sandbox.store}"
    print(f"dropd sandbox listening on {where}", flush=True)
    sandbox._log(f"clients: {', '.join(sorted(clients))}")
    try:
        stop.wait()
    finally:
        sandbox.stop()
    return 0
