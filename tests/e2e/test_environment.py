"""What `dropd run` takes from its environment: proxy variables, and the client secret from
a file (warned about when others can read it), a variable or a systemd credential.

Real processes on 127.0.0.1: `dropd sandbox`, `dropd run`, and for the proxy test a small
HTTP forward proxy in a thread of the test.
"""

from __future__ import annotations

import socketserver
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from harness import (
    USERS,
    DaemonProcess,
    SandboxProcess,
    drop,
    errors,
    group_status,
    read,
    receipts,
    sandbox_environment,
    start_daemon,
    toml_config,
    wait_for,
    write_secret,
)

SECRET = "secret-a-1234"  # the conftest sandbox's secret for client `unit-a`
# Retries come promptly, so a group waiting for its secret shows it within seconds.
FAST = {"retry_initial_seconds": 0.2, "retry_max_seconds": 1}
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


# -- helpers ----------------------------------------------------------------------------------


def named(daemon: DaemonProcess, event: str, **fields: Any) -> list[dict[str, Any]]:
    """The daemon's log events called `event` whose fields match."""
    return [
        e
        for e in daemon.events()
        if e.get("event") == event and all(e.get(k) == v for k, v in fields.items())
    ]


def started(
    tmp_path: Path,
    config: Path,
    processes: list[SandboxProcess | DaemonProcess],
    env: dict[str, str] | None = None,
) -> DaemonProcess:
    """`dropd run` with `env` over the test's environment, once it says it is ready."""
    daemon = start_daemon(config, tmp_path / "daemon.log", env)
    processes.append(daemon)
    daemon.wait_event("daemon_ready")
    return daemon


def folders(tmp_path: Path, *names: str) -> list[Path]:
    made = [tmp_path / "drop" / name for name in names]
    for folder in made:
        folder.mkdir(parents=True)
    return made


def sandbox_urls(sandbox: SandboxProcess, client_id: str = "unit-a") -> dict[str, Any]:
    """An environment of the sandbox without its secret source."""
    return {"token_url": sandbox.token_url, "base_url": sandbox.url, "client_id": client_id}


def waiting_files(folder: Path) -> list[Path]:
    """Files of batches claimed from `folder` and not yet sent or failed."""
    return sorted((folder / ".dropd" / "work").glob("*/files/*"))


class _LoopbackServer(ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, which stalls on a bad resolver.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]


class ForwardProxy:
    """An HTTP forward proxy on 127.0.0.1, as `HTTP_PROXY` names one.

    It takes absolute-URI requests (`POST http://127.0.0.1:PORT/oauth/token HTTP/1.1`),
    forwards them with urllib (itself told to use no proxy), copies status, headers and
    body back, and keeps the path of each request it forwarded. Anything not for an
    `http://127.0.0.1` URL is refused and kept in `refused`.
    """

    def __init__(self) -> None:
        self.forwarded: list[str] = []
        self.refused: list[str] = []
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_POST(self) -> None:
                proxy.forward(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = _LoopbackServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def forward(self, handler: BaseHTTPRequestHandler) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        target = urlsplit(handler.path)
        if target.scheme != "http" or target.hostname != "127.0.0.1":
            # A relative path means the client came straight here, not through a proxy.
            self.refused.append(handler.path)
            handler.send_error(403, "only absolute http://127.0.0.1 URLs are forwarded")
            return
        self.forwarded.append(target.path)
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in _NOT_FORWARDED}
        request = urllib.request.Request(handler.path, data=body, headers=headers, method="POST")
        try:
            answer = self._opener.open(request, timeout=60)
        except urllib.error.HTTPError as error:
            answer = error
        with answer:
            status, reply_headers, reply = answer.status, answer.headers, answer.read()
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


@pytest.fixture
def forward_proxy() -> Iterator[ForwardProxy]:
    """A forward proxy, stopped at the test's end (request it before `processes`)."""
    proxy = ForwardProxy()
    yield proxy
    proxy.stop()


# -- 1. proxy variables -----------------------------------------------------------------------


def test_environment_proxy_variables_are_honoured(
    tmp_path: Path,
    forward_proxy: ForwardProxy,
    sandbox: SandboxProcess,
    processes: list[SandboxProcess | DaemonProcess],
) -> None:
    [folder] = folders(tmp_path, "music")
    environment = sandbox_environment(
        sandbox, "unit-a", write_secret(tmp_path / "test.secret", SECRET)
    )
    groups = {"music": {"environment": "test", "folder": str(folder)}}
    config = toml_config(tmp_path, {"test": environment}, groups, **FAST)
    # Empty NO_PROXY values override any the host has: requests would skip the proxy for
    # a host they list, and a loopback sandbox is often listed.
    env = {
        "HTTP_PROXY": forward_proxy.url,
        "http_proxy": forward_proxy.url,
        "NO_PROXY": "",
        "no_proxy": "",
    }
    daemon = started(tmp_path, config, processes, env)
    drop(folder, "users.csv", USERS)

    [receipt] = wait_for(lambda: receipts(folder), "the receipt of a batch sent through a proxy")
    assert read(receipt)["status"] == 200
    assert (receipt.parent / "users.csv").read_bytes() == USERS
    assert forward_proxy.refused == [], "requests came to the proxy without an absolute URL"
    assert forward_proxy.forwarded == ["/oauth/token", "/rest/upload/music/zip"]
    assert len(sandbox.uploads()) == 1
    assert not errors(folder)
    assert daemon.stop() == 0


# -- 2. a secret file others can read ---------------------------------------------------------


def test_environment_secret_file_readable_by_others_is_a_warning(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    open_secret = write_secret(tmp_path / "open.secret", SECRET)
    open_secret.chmod(0o644)
    closed_secret = write_secret(tmp_path / "closed.secret", SECRET)  # 0600
    music, art = folders(tmp_path, "music", "art")
    environments = {
        "open": sandbox_environment(sandbox, "unit-a", open_secret),
        "closed": sandbox_environment(sandbox, "unit-a", closed_secret),
    }
    groups = {
        "music": {"environment": "open", "folder": str(music)},
        "art": {"environment": "closed", "folder": str(art)},
    }
    config = toml_config(tmp_path, environments, groups, **FAST)
    daemon = started(tmp_path, config, processes)
    drop(music, "users.csv", USERS)
    drop(art, "users.csv", USERS)

    [sent] = wait_for(lambda: receipts(music), "the receipt with a 0644 secret file")
    assert read(sent)["status"] == 200
    wait_for(lambda: receipts(art), "the receipt with a 0600 secret file")
    assert not errors(music) and not errors(art)
    assert len(sandbox.uploads()) == 2
    warnings = named(daemon, "secret_file_readable_by_others")
    assert [w["path"] for w in warnings] == [str(open_secret)], warnings
    [warning] = warnings
    assert warning["level"] == "warning", warning
    assert warning["environment"] == "open"
    assert warning["fix"] == f"chmod 600 {open_secret}"
    assert str(closed_secret) not in daemon.text(), "nothing to say about a 0600 file"
    assert SECRET not in daemon.text()


# -- 3. the secret from a variable or a systemd credential ------------------------------------


def test_environment_secret_from_env_var_and_credential(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    sandbox: SandboxProcess,
    processes: list[SandboxProcess | DaemonProcess],
) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    write_secret(credentials / "sandbox", SECRET)
    # The daemon inherits the test's environment: the missing variable must really be missing.
    monkeypatch.delenv("DROPD_TEST_MISSING_SECRET", raising=False)
    music, art, drama = folders(tmp_path, "music", "art", "drama")
    environments = {
        "variable": {**sandbox_urls(sandbox), "client_secret_env": "DROPD_TEST_SECRET"},
        "credential": {**sandbox_urls(sandbox), "client_secret_credential": "sandbox"},
        "missing": {**sandbox_urls(sandbox), "client_secret_env": "DROPD_TEST_MISSING_SECRET"},
    }
    groups = {
        "music": {"environment": "variable", "folder": str(music)},
        "art": {"environment": "credential", "folder": str(art)},
        "drama": {"environment": "missing", "folder": str(drama)},
    }
    config = toml_config(tmp_path, environments, groups, **FAST)
    env = {"DROPD_TEST_SECRET": SECRET, "CREDENTIALS_DIRECTORY": str(credentials)}
    daemon = started(tmp_path, config, processes, env)
    drop(drama, "users.csv", USERS)

    state = tmp_path / "state"
    status = wait_for(
        lambda: (s := group_status(state, "drama")) and s["status"] == "Error" and s,
        "drama in Error without its secret",
    )
    assert status["step"] == "token", status
    assert "DROPD_TEST_MISSING_SECRET" in status["reason"], status
    unavailable = named(daemon, "secret_unavailable")
    assert [e["environment"] for e in unavailable] == ["missing"], unavailable

    drop(music, "users.csv", USERS)
    drop(art, "users.csv", USERS)
    [by_variable] = wait_for(lambda: receipts(music), "the receipt with the secret in a variable")
    [by_credential] = wait_for(lambda: receipts(art), "the receipt with a systemd credential")
    assert read(by_variable)["status"] == 200 and read(by_credential)["status"] == 200
    assert not errors(music) and not errors(art)
    assert len(sandbox.uploads()) == 2

    assert daemon.process.poll() is None, f"dropd exited:\n{daemon.text()}"
    assert [p.name for p in waiting_files(drama)] == ["users.csv"], "the batch waits in the spool"
    assert waiting_files(drama)[0].read_bytes() == USERS
    assert not errors(drama) and not (drama / "failed").exists()
    assert not receipts(drama)
    assert named(daemon, "batch_waits", group="drama", step="token")
    still = group_status(state, "drama")
    assert still is not None and still["status"] == "Error" and still["step"] == "token", still
    assert SECRET not in daemon.text()
    assert daemon.stop() == 0
