"""The sandbox's HTTP side: the server on 127.0.0.1, and the routing of each request.

Its routes:

    GET  /_sandbox/health              {"status": "UP"}
    GET  /_sandbox/uploads             the request.json of every kept upload
    POST /oauth/token                  a token (`daemon.sandbox.tokens`)
    POST /rest/upload/GROUP[/zip]      an upload, judged (`daemon.sandbox.checks`) and kept
    POST /_sandbox/script              queue scripted answers (`daemon.sandbox.script`)
    POST /_sandbox/revoke              revoke every token
    GET|POST /_sandbox/elsewhere       an HTML page titled "Elsewhere", where scripted
                                       redirects may point; each request is counted
    GET  /_sandbox/elsewhere/hits      {"hits": N}: proof that no client followed one
"""

from __future__ import annotations

import contextlib
import html
import json
import re
import socket
import socketserver
import struct
import sys
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

from daemon.sandbox import checks as sandbox_checks
from daemon.sandbox.form import RequestError, read_form
from daemon.sandbox.provider import Provider
from daemon.sandbox.script import AnswerKind, Endpoint, ScriptedAnswer
from daemon.sandbox.store import UploadRequest
from daemon.sandbox.tokens import JsonAnswer, unauthorized

_UPLOAD_ROUTE = re.compile(r"/rest/upload/(?P<group>[^/]+)(?P<zip>/zip)?")
_PROXY_PAGE = (
    "<html>\r\n<head><title>{0}</title></head>\r\n<body>\r\n<center><h1>{0}</h1></center>\r\n"
    "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


def log_line(line: str) -> None:
    """Write one line of the sandbox's log to stderr."""
    sys.stderr.write(f"sandbox: {line}\n")
    sys.stderr.flush()


# Where Spring's reason phrase is not Python's (its error JSON's "error").
_SPRING_PHRASES = {413: "Payload Too Large"}


def _phrase(status: int) -> str:
    if status in _SPRING_PHRASES:
        return _SPRING_PHRASES[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds")


class SandboxServer(ThreadingHTTPServer):
    """The sandbox's HTTP server on 127.0.0.1, which can drop its open connections."""

    daemon_threads = True

    def __init__(self, provider: Provider, port: int = 0) -> None:
        self.provider = provider
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        self.stopping = threading.Event()  # ends scripted hangs
        super().__init__(("127.0.0.1", port), _Handler)

    @property
    def url(self) -> str:
        """The base URL, `http://127.0.0.1:PORT`."""
        return f"http://127.0.0.1:{self.server_address[1]}"

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, which stalls on a bad resolver.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]

    def stop(self) -> None:
        """Stop serving and drop every open connection, hung ones included."""
        self.stopping.set()
        self.shutdown()
        self.close_connections()
        self.server_close()

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
    server: SandboxServer
    note = ""

    @property
    def provider(self) -> Provider:
        return self.server.provider

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
        log_line(f"{self.command or '-'} {path} {int(code)}{note}")

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
            folders = self.provider.uploads.folders()
            records = [(folder / "request.json").read_text() for folder in folders]
            self._send_json(200, [json.loads(record) for record in records])
        elif path == "/_sandbox/elsewhere":
            self._elsewhere()
        elif path == "/_sandbox/elsewhere/hits":
            self._send_json(200, {"hits": self.provider.elsewhere.hits})
        elif _UPLOAD_ROUTE.fullmatch(path):
            self._upload_route_get()
        else:
            self._send_spring_error(404)

    def _elsewhere(self) -> None:
        # Where scripted redirects point: a page that is not the API, counting who came.
        self.provider.elsewhere.hit()
        self._send(200, _PROXY_PAGE.format("Elsewhere").encode(), "text/html")

    def _upload_route_get(self) -> None:
        # As the real API: its security filter checks the token on /rest/upload/** first, and
        # the controller takes only POST.
        client_id, problem = self.provider.tokens.bearer_client(
            self.headers.get("Authorization", "")
        )
        if client_id is None:
            self._send_answer(unauthorized(problem))
        else:
            self._send_json(405, self._spring_error(405), {"Allow": "POST"})

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
            self.provider.tokens.revoke_all()
            self._send_json(200, {"revoked": True})
        elif path == "/_sandbox/elsewhere":
            self._elsewhere()
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

    def _send_answer(self, answer: JsonAnswer) -> None:
        self._send_json(answer.status, answer.body, answer.headers)

    def _spring_error(self, status: int) -> dict[str, Any]:
        """The body Spring Boot sends for an error no controller answered."""
        return {
            "timestamp": _iso(self.provider.clock()),
            "status": status,
            "error": _phrase(status),
            "path": urlsplit(self.path).path,
        }

    def _send_spring_error(self, status: int, note: str = "") -> None:
        self.note = note
        self._send_json(status, self._spring_error(status))

    def _play(self, answer: ScriptedAnswer) -> bool:
        """Answer as scripted: a status and body, a hang, or a reset connection; or pause, then
        return True for the request to be served as usual."""
        path = urlsplit(self.path).path
        if answer.kind is AnswerKind.PAUSE:
            log_line(f"{self.command} {path} pause {answer.seconds}s (scripted)")
            self.server.stopping.wait(float(answer.seconds))
            return True
        self.close_connection = answer.kind is not AnswerKind.STATUS
        if answer.kind is AnswerKind.RESET:
            log_line(f"{self.command} {path} reset (scripted)")
            # With linger 0, close() sends a TCP reset instead of an orderly end.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.rfile.close()  # the file holds a reference that would keep the socket open
            self.connection.close()
        elif answer.kind is AnswerKind.HANG:
            log_line(f"{self.command} {path} hang {answer.seconds}s (scripted)")
            self.server.stopping.wait(float(answer.seconds))
        else:
            self._send_scripted(answer.status, answer)
        return False

    def _send_scripted(self, status: int, answer: ScriptedAnswer) -> None:
        headers = dict(answer.headers)
        if answer.retry_after is not None:
            headers["Retry-After"] = answer.retry_after
        if answer.location is not None:
            # A relative location points into the sandbox itself, as a proxy's would.
            headers["Location"] = urljoin(self.server.url + "/", answer.location)
        body = answer.body
        if answer.echo_authorization:
            # A server that echoes the request's credentials in its answer.
            echoed = f"{_phrase(status).lower()} from {self.headers.get('Authorization', '')}"
            given = body if isinstance(body, dict) else {}
            body = {"fileErrors": None, **given, "message": echoed}
        self.note = "scripted"
        if answer.html:
            title = answer.title or f"{status} {_phrase(status)}"
            page = _PROXY_PAGE.format(html.escape(title))
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
        if (answer := self.provider.answers.next(Endpoint.TOKEN)) and not self._play(answer):
            return
        self._send_answer(self.provider.tokens.answer(self.headers.get("Authorization", ""), body))

    def _upload(self, group: str, endpoint: str, body: bytes) -> None:
        if (answer := self.provider.answers.next(Endpoint.UPLOAD)) and not self._play(answer):
            return
        authorization = self.headers.get("Authorization", "")
        client_id, problem = self.provider.tokens.bearer_client(authorization)
        if client_id is None:
            self._send_answer(unauthorized(problem))
            return
        limit = self.provider.max_upload_bytes
        if limit is not None and len(body) > limit:
            # As Spring's MaxUploadSizeExceededException: security first, then the size.
            self._send_spring_error(413, f"{len(body):,} bytes, over --max-upload-bytes {limit:,}")
            return
        allowed, content_type = self.provider.allowed_groups, self.headers.get("Content-Type", "")
        refused = client_id if allowed is not None and group not in allowed else None
        try:
            form = read_form(endpoint, content_type, body, urlsplit(self.path).query)
            verdict, files = sandbox_checks.judge_upload(endpoint, form, refused)
        except RequestError as exc:
            self._send_spring_error(exc.status, exc.reason)
            return
        self.note = verdict.note or (verdict.message if verdict.status != 200 else "")
        if verdict.status == 200:
            path, received_at = urlsplit(self.path).path, _iso(self.provider.clock())
            request = UploadRequest(group, endpoint, path, received_at, client_id, content_type)
            try:
                self.note = self.provider.uploads.keep(request, form, files, verdict).name
            except OSError as exc:
                self._send_spring_error(500, f"cannot keep the upload in the store: {exc}")
                return
        self._send_json(verdict.status, verdict.body())

    def _script(self, body: bytes) -> None:
        try:
            answers = json.loads(body or b"[]")
            self.provider.answers.add(answers if isinstance(answers, list) else [answers])
        except ValueError as exc:  # a json.JSONDecodeError is a ValueError too
            self._send_json(400, {"error": str(exc)})
            return
        self._send_json(200, {"queued": self.provider.answers.queued()})
