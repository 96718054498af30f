"""`dropd sandbox`: a local stand-in of the provider's token and upload API on 127.0.0.1.

Uploads are judged as the real server judges them (`daemon.sandbox.checks`); each accepted
one is kept in the store, in arrival order (`daemon.sandbox.store`):

    STORE/000001-GROUP/request.json   group, endpoint, path, client, time, form, parts, files
    STORE/000001-GROUP/upload.zip     the ZIP part, byte for byte (zip endpoint only)
    STORE/000001-GROUP/files/NAME     each file the server reads, byte for byte

With `max_upload_bytes` (`--max-upload-bytes N`), an upload whose request body is over N
bytes is answered as Spring Boot answers one over its multipart limit: 413 with Spring's
error JSON, after the token is checked and before the form is read; without it, no limit.

Scripted answers make it misbehave; each is played instead of the next request to its
endpoint (`"endpoint": "token"`, else the upload endpoints), before any check:

    {"status": 503, "body": {...} or "text", "headers": {...}}   an answer (default body:
    {"status": 429, "retry_after": "2"}                           Spring's error JSON)
    {"status": 502, "html": true}                                 a proxy's HTML page
    {"status": 200, "html": true, "title": "Sign in"}             a page with that title
    {"status": 200, "body": ""}                                   an empty body
    {"status": 302, "location": "/_sandbox/elsewhere"}            a redirect (a relative
                                                                  location is made absolute)
    {"status": 400, "echo_authorization": true}                   {"message": "bad request from
                                                                  Bearer ..."}: it echoes the
                                                                  request's Authorization
    {"hang": 30}                                                  no answer for 30 s, then close
    {"pause": 3}                                                  wait 3 s, then serve as usual
    {"reset": true}                                               a TCP reset, no answer

An html page's title is the status and its phrase unless `title` gives one. A redirect may
point at `/_sandbox/elsewhere`, a page that counts its visitors (`/_sandbox/elsewhere/hits`),
so a test can prove that no client followed it. `echo_authorization` merges the message into
a JSON `body` if one is given.

The requests are served and routed in `daemon.sandbox.http`, from the state kept in
`daemon.sandbox.provider`; tokens are issued in `daemon.sandbox.tokens`.
"""

from __future__ import annotations

import argparse
import functools
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

from daemon.sandbox.http import SandboxServer, log_line
from daemon.sandbox.provider import HitCounter, Provider
from daemon.sandbox.script import ScriptedAnswers
from daemon.sandbox.store import UploadStore
from daemon.sandbox.tokens import TokenIssuer

DEFAULT_CLIENTS = {"dropd-demo": "demo-secret"}


class Sandbox:
    """The provider's API on 127.0.0.1, serving from a background thread.

    Its state, which the request handler uses, is `provider` (see `Provider`).
    """

    def __init__(
        self,
        store: Path,
        port: int = 0,
        clients: Mapping[str, str] | None = None,
        token_lifetime: float = 3600.0,
        clock: Callable[[], float] = time.time,
        allowed_groups: set[str] | None = None,
        max_upload_bytes: int | None = None,
    ) -> None:
        self.store = Path(store).resolve()
        self.port = port
        self.clients = dict(DEFAULT_CLIENTS if clients is None else clients)
        self.token_lifetime = token_lifetime
        self.clock = clock
        self.allowed_groups = allowed_groups
        self.max_upload_bytes = max_upload_bytes
        self.provider = Provider(
            tokens=TokenIssuer(self.clients, token_lifetime, clock),
            answers=ScriptedAnswers(),
            uploads=UploadStore(self.store),
            elsewhere=HitCounter(),
            clock=clock,
            allowed_groups=None if allowed_groups is None else frozenset(allowed_groups),
            max_upload_bytes=max_upload_bytes,
        )
        self._server: SandboxServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL, `http://127.0.0.1:PORT`; raises RuntimeError before start()."""
        if self._server is None:
            raise RuntimeError("the sandbox has no URL until start() is called")
        return self._server.url

    @property
    def elsewhere(self) -> HitCounter:
        """The requests to `/_sandbox/elsewhere`, where scripted redirects may point."""
        return self.provider.elsewhere

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
        self.provider.uploads.open()
        self._server = SandboxServer(self.provider, self.port)
        # A short poll interval: shutdown() waits for it, and tests stop many sandboxes.
        serve = functools.partial(self._server.serve_forever, poll_interval=0.05)
        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and drop every open connection, hung ones included."""
        server, self._server = self._server, None
        if server is None:
            return
        server.stop()
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

    def script(self, answers: Sequence[object]) -> None:
        """Queue scripted answers as JSON gives them (see the module's docstring), each used
        once, in order.

        Raises ValueError if any answer is malformed; then none is queued.
        """
        self.provider.answers.add(answers)

    def revoke_tokens(self) -> None:
        """Revoke every token issued so far; requests that use one get a 401."""
        self.provider.tokens.revoke_all()

    def uploads(self) -> list[Path]:
        """The folders of the accepted uploads in the store, in arrival order."""
        return self.provider.uploads.folders()


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
    sandbox = Sandbox(
        args.store,
        args.port,
        clients,
        token_lifetime=args.token_lifetime,
        max_upload_bytes=args.max_upload_bytes,
    )
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
    log_line(f"clients: {', '.join(sorted(clients))}")
    if args.max_upload_bytes is not None:
        log_line(f"uploads over {args.max_upload_bytes:,} bytes are answered 413")
    try:
        stop.wait()
    finally:
        sandbox.stop()
    return 0
