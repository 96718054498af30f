"""An HTTP proxy in a thread of the test, in front of `dropd sandbox`: as `HTTP_PROXY` names
one (a forward proxy), or as a site's own front end, over HTTP or HTTPS (a reverse proxy).

It keeps the path of every request it forwarded and every access token the token endpoint
handed out through it, so a test can tell which way dropd's requests went.
"""

from __future__ import annotations

import json
import socketserver
import ssl
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

__all__ = ["HttpProxy", "LoopbackServer"]

# Headers of one hop, which a proxy sets for itself instead of copying.
_NOT_FORWARDED = {
    "connection",
    "proxy-connection",
    "proxy-authorization",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "host",
    "server",
    "date",
}


class LoopbackServer(ThreadingHTTPServer):
    """A threading HTTP server on 127.0.0.1 that never looks up the host's name."""

    daemon_threads = True

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, which stalls on a bad resolver.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]


class HttpProxy:
    """A proxy on 127.0.0.1 that forwards POSTs with urllib (itself told to use no proxy) and
    copies status, headers and body back.

    With a `target` it is a reverse proxy in front of that base URL, over HTTPS with `tls`.
    Without one it is a forward proxy: it takes absolute-URI requests
    (`POST http://127.0.0.1:PORT/oauth/token HTTP/1.1`) and refuses, keeping it in `refused`,
    anything not for an `http://127.0.0.1` URL.
    """

    def __init__(self, target: str | None = None, tls: ssl.SSLContext | None = None) -> None:
        self.target = target
        self.forwarded: list[str] = []
        self.refused: list[str] = []
        self.tokens: list[str] = []
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_POST(self) -> None:
                proxy.forward(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = LoopbackServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            # The handshake runs in accept(): a client that refuses the certificate never
            # reaches the handler, and socketserver drops the failed accept silently.
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def _destination(self, handler: BaseHTTPRequestHandler) -> tuple[str, str] | None:
        """The URL to forward to and the path to note, or None for a request refused."""
        if self.target is not None:
            return self.target + handler.path, handler.path
        target = urlsplit(handler.path)
        if target.scheme != "http" or target.hostname != "127.0.0.1":
            # A relative path means the client came straight here, not through a proxy.
            return None
        return handler.path, target.path

    def forward(self, handler: BaseHTTPRequestHandler) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        destination = self._destination(handler)
        if destination is None:
            self.refused.append(handler.path)
            handler.send_error(403, "only absolute http://127.0.0.1 URLs are forwarded")
            return
        url, path = destination
        self.forwarded.append(path)
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in _NOT_FORWARDED}
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            answer = self._opener.open(request, timeout=60)
        except urllib.error.HTTPError as error:
            answer = error
        with answer:
            status, reply_headers, reply = answer.status, answer.headers, answer.read()
        if path == "/oauth/token" and status == 200:
            self.tokens.append(str(json.loads(reply)["access_token"]))
        handler.send_response(status)
        for name, value in reply_headers.items():
            if name.lower() not in _NOT_FORWARDED:
                handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(reply)))
        handler.end_headers()
        handler.wfile.write(reply)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)
