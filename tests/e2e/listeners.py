"""Real receivers of dropd's alerts on 127.0.0.1: an SMTP server (aiosmtpd) for `mailto://`
and a JSON webhook (http.server) for `json://`, each keeping what it was sent."""

from __future__ import annotations

import email
import email.policy
import json
import threading
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from harness import free_port


class MailServer:
    """An SMTP server taking any login (noting it) and keeping each message."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.logins: list[tuple[str, str]] = []
        self.port = free_port()
        self.controller = Controller(
            self,
            hostname="127.0.0.1",
            port=self.port,
            auth_require_tls=False,  # a test's relay on loopback: no TLS to set up
            authenticator=self._login,
        )
        self.controller.start()

    def _login(
        self, _server: SMTP, _session: Session, _envelope: Envelope, _mechanism: str, data: Any
    ) -> AuthResult:
        if isinstance(data, LoginPassword):
            self.logins.append((data.login.decode(), data.password.decode()))
        return AuthResult(success=True)

    async def handle_DATA(self, _server: SMTP, _session: Session, envelope: Envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else b""
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 OK"

    def url(self, password: str) -> str:
        return (
            f"mailto://dropd:{password}@127.0.0.1:{self.port}"
            "?to=sis-team@example.edu&from=dropd@example.edu"
        )

    def stop(self) -> None:
        self.controller.stop()


class Webhook:
    """An HTTP server on 127.0.0.1 keeping the JSON body and path of each POST."""

    def __init__(self, status: int = 200) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []
        posts, lock = self.posts, threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with lock:
                    posts.append((self.path, body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the test reads `posts`, not a log

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/dropd") -> str:
        return f"json://127.0.0.1:{self.port}{path}"

    def bodies(self) -> list[dict[str, Any]]:
        return [body for _, body in self.posts]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
