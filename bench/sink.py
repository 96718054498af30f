"""A discard sink: just enough of the API for dropd and for `curl`, and nothing done with it.

The headline runs send here, so that the time from drop to the 200 is the sender's: the
sink unzips nothing and checks nothing. Its routes:

    POST /oauth/token               the client's id and secret (HTTP Basic, else the form)
                                    and grant_type=client_credentials: 200, a random token
    POST /rest/upload/GROUP[/zip]   reads the whole body and discards it; with a token it
                                    issued, 200 and the sandbox's success answer, else 401
    GET  /_sink/uploads             one record per upload: when its headers and its last
                                    body byte were read (epoch seconds), the bytes read,
                                    whether its token was one the sink issued

    python bench/sink.py ID:SECRET      # prints its port, then serves until stopped

`Sink.start` runs it as a process of its own, as `dropd sandbox` runs, so that its reading
does not share this process's interpreter with the benchmark's samplers.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import socketserver
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from procs import stop

READ = 1 << 20
UPLOAD_ROUTE = re.compile(r"/rest/upload/[^/]+(/zip)?")
# The sandbox's answer to an upload it accepts (daemon/sandbox/checks.py's ACCEPTED).
ACCEPTED = {
    "message": "The files are being processed. Summary emails will be sent at a later time.",
    "fileErrors": None,
}
LIFETIME = 3600


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, client_id: str, secret: str) -> None:
        self.client = (client_id, secret)
        self.tokens: set[str] = set()
        self.uploads: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def server_bind(self) -> None:
        # HTTPServer's own looks the host's name up, which can stall on a slow resolver.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # also answers curl's `Expect: 100-continue` at once
    server: _Server

    def do_GET(self) -> None:
        if urlsplit(self.path).path == "/_sink/uploads":
            with self.server.lock:
                self._send(200, list(self.server.uploads))
        else:
            self._send(404, {"error": "Not Found"})

    def do_POST(self) -> None:
        started = time.time()
        length = self.headers.get("Content-Length")
        if length is None:  # neither contender sends a chunked body
            self.close_connection = True
            self._send(411, {"error": "Length Required"})
            return
        path = urlsplit(self.path).path
        if UPLOAD_ROUTE.fullmatch(path):
            self._upload(started, int(length))
        elif path == "/oauth/token":
            self._token(self.rfile.read(int(length)))
        else:
            self._discard(int(length))
            self._send(404, {"error": "Not Found"})

    def _discard(self, length: int) -> int:
        """Read `length` bytes of body into one reused buffer; the bytes read."""
        buffer = memoryview(bytearray(READ))
        total = 0
        while total < length and (got := self.rfile.readinto(buffer[: min(READ, length - total)])):
            total += got
        return total

    def _upload(self, started: float, length: int) -> None:
        read = self._discard(length)
        last_byte_at = time.time()
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        with self.server.lock:
            authorized = scheme.lower() == "bearer" and token.strip() in self.server.tokens
            self.server.uploads.append(
                {
                    "path": self.path,
                    "started_at": started,
                    "last_byte_at": last_byte_at,
                    "bytes": read,
                    "authorized": authorized,
                }
            )
        if read < length:
            self.close_connection = True  # the sender went away mid-body
        if authorized:
            self._send(200, ACCEPTED)
        else:
            self._send(401, {"error": "invalid_token"}, {"WWW-Authenticate": "Bearer"})

    def _token(self, body: bytes) -> None:
        form = parse_qs(body.decode("utf-8", errors="replace"))
        if self._client(form) != self.server.client:
            self._send(401, {"error": "invalid_client"})
        elif form.get("grant_type") != ["client_credentials"]:
            self._send(400, {"error": "unsupported_grant_type"})
        else:
            token = secrets.token_urlsafe(32)
            with self.server.lock:
                self.server.tokens.add(token)
            answer = {"access_token": token, "token_type": "bearer", "expires_in": LIFETIME}
            self._send(200, answer, {"Cache-Control": "no-store"})

    def _client(self, form: dict[str, list[str]]) -> tuple[str, str]:
        """The client's id and secret: from HTTP Basic where sent (curl -u, dropd's default),
        else from the form (`token_auth = "body"`)."""
        scheme, _, value = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                pair = base64.b64decode(value.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return "", ""
            client_id, _, secret = pair.partition(":")
            return client_id, secret
        return form.get("client_id", [""])[0], form.get("client_secret", [""])[0]

    def _send(self, status: int, payload: object, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def serve(client_id: str, secret: str) -> None:
    server = _Server(client_id, secret)
    print(server.server_address[1], flush=True)
    server.serve_forever()


@dataclass(frozen=True)
class Received:
    """One upload as the sink read it."""

    started_at: float  # its headers read
    last_byte_at: float  # its last body byte read
    bytes: int
    authorized: bool


@dataclass
class Sink:
    """The sink as its own process, with one client: what a dropd config and curl need."""

    process: subprocess.Popen[str]
    url: str
    client_id: str
    secret: str

    @classmethod
    def start(cls, log: Path, client_id: str, secret: str) -> Sink:
        """Start it and read its port from its first line; raises RuntimeError if none."""
        args = [sys.executable, __file__, f"{client_id}:{secret}"]
        with open(log, "wb") as err:
            process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, text=True)
        assert process.stdout is not None
        first = process.stdout.readline().strip()
        if not first.isdigit():
            stop(process)
            raise RuntimeError(f"the sink did not start (first line {first!r}); see {log}")
        return cls(process, f"http://127.0.0.1:{first}", client_id, secret)

    def uploads(self) -> list[Received]:
        """Every upload it has read, oldest first."""
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no proxy
        with direct.open(self.url + "/_sink/uploads", timeout=10) as answer:
            records = json.loads(answer.read())
        return [
            Received(r["started_at"], r["last_byte_at"], r["bytes"], r["authorized"])
            for r in records
        ]

    def stop(self) -> None:
        stop(self.process)
        if self.process.stdout is not None:
            self.process.stdout.close()


if __name__ == "__main__":
    client, _, key = sys.argv[1].partition(":")
    serve(client, key)
