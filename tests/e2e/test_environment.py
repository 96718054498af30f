"""What `dropd run` takes from its environment: proxy variables, and the client secret from
a file (warned about when others can read it), a variable or a systemd credential.

Real processes on 127.0.0.1: `dropd sandbox`, `dropd run`, and for the proxy test a small
HTTP forward proxy in a thread of the test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from harness import (
    USERS,
    DaemonProcess,
    SandboxProcess,
    drop,
    drop_folders,
    errors,
    group_status,
    read,
    receipts,
    sandbox_environment,
    start_ready,
    toml_config,
    wait_for,
    write_secret,
)
from proxy import HttpProxy

SECRET = "secret-a-1234"  # the conftest sandbox's secret for client `unit-a`
# Retries come promptly, so a group waiting for its secret shows it within seconds.
FAST = {"retry_initial_seconds": 0.2, "retry_max_seconds": 1}


# -- helpers ----------------------------------------------------------------------------------


def sandbox_urls(sandbox: SandboxProcess, client_id: str = "unit-a") -> dict[str, Any]:
    """An environment of the sandbox without its secret source."""
    return {"token_url": sandbox.token_url, "base_url": sandbox.url, "client_id": client_id}


def waiting_files(folder: Path) -> list[Path]:
    """Files of batches claimed from `folder` and not yet sent or failed."""
    return sorted((folder / ".dropd" / "work").glob("*/files/*"))


# -- 1. proxy variables -----------------------------------------------------------------------


def test_environment_proxy_variables_are_honoured(
    tmp_path: Path,
    proxies: list[HttpProxy],
    sandbox: SandboxProcess,
    processes: list[SandboxProcess | DaemonProcess],
) -> None:
    forward_proxy = HttpProxy()  # a forward proxy, as HTTP_PROXY names one
    proxies.append(forward_proxy)
    folder = drop_folders(tmp_path, "music")["music"]
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
    daemon = start_ready(processes, config, tmp_path / "daemon.log", env)
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
    music, art = drop_folders(tmp_path, "music", "art").values()
    environments = {
        "open": sandbox_environment(sandbox, "unit-a", open_secret),
        "closed": sandbox_environment(sandbox, "unit-a", closed_secret),
    }
    groups = {
        "music": {"environment": "open", "folder": str(music)},
        "art": {"environment": "closed", "folder": str(art)},
    }
    config = toml_config(tmp_path, environments, groups, **FAST)
    daemon = start_ready(processes, config, tmp_path / "daemon.log")
    drop(music, "users.csv", USERS)
    drop(art, "users.csv", USERS)

    [sent] = wait_for(lambda: receipts(music), "the receipt with a 0644 secret file")
    assert read(sent)["status"] == 200
    wait_for(lambda: receipts(art), "the receipt with a 0600 secret file")
    assert not errors(music) and not errors(art)
    assert len(sandbox.uploads()) == 2
    warnings = daemon.named("secret_file_readable_by_others")
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
    music, art, drama = drop_folders(tmp_path, "music", "art", "drama").values()
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
    daemon = start_ready(processes, config, tmp_path / "daemon.log", env)
    drop(drama, "users.csv", USERS)

    state = tmp_path / "state"
    status = daemon.wait_status("drama", status="Error")
    assert status["step"] == "token", status
    assert "DROPD_TEST_MISSING_SECRET" in status["reason"], status
    unavailable = daemon.named("secret_unavailable")
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
    assert daemon.named("batch_waits", group="drama", step="token")
    still = group_status(state, "drama")
    assert still is not None and still["status"] == "Error" and still["step"] == "token", still
    assert SECRET not in daemon.text()
    assert daemon.stop() == 0
