"""Uploads against a misbehaving provider: `dropd run` and `dropd sandbox` as real processes.

Every answer of the answer-to-outcome table, tokens that expire, are revoked or cannot be had, a
restart that reuses the cached token, groups that do not wait for each other, TLS with a
campus CA, and a grep of everything dropd wrote for the secret and every token.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import os
import shutil
import ssl
import stat
import subprocess
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from harness import (
    COURSES,
    USERS,
    DaemonProcess,
    Sampling,
    SandboxProcess,
    drop,
    drop_folders,
    errors,
    read,
    receipts,
    sandbox_environment,
    script_sandbox,
    second_sandbox,
    start_ready,
    start_sandbox,
    toml_config,
    wait_for,
    write_secret,
)
from proxy import HttpProxy

SECRET = "secret-a-1234"
# Retries come promptly; backoff alone never waits longer than retry_max_seconds.
FAST = {"retry_initial_seconds": 0.2, "retry_max_seconds": 1}
FILE_ERRORS = [
    {"title": "people.csv", "description": "Unknown file type: header 'id,name' is not known"}
]


# -- helpers ----------------------------------------------------------------------------------


def one_group(tmp_path: Path, environment: dict[str, Any], **daemon: Any) -> tuple[Path, Path]:
    """A config with group `music` on environment `test`, fast retries; (config, folder)."""
    folder = tmp_path / "drop" / "music"
    folder.mkdir(parents=True)
    config = toml_config(
        tmp_path,
        {"test": environment},
        {"music": {"environment": "test", "folder": str(folder)}},
        **{**FAST, **daemon},
    )
    return config, folder


def sandbox_env(tmp_path: Path, sandbox: SandboxProcess) -> dict[str, Any]:
    return sandbox_environment(sandbox, "unit-a", write_secret(tmp_path / "test.secret", SECRET))


def moment(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00"))


# -- 1. every retried answer of the table -----------------------------------------------------

RETRIED = ["408", "429-seconds", "429-date", "500", "502-html", "503", "reset", "read-timeout"]


def fault(name: str) -> dict[str, Any]:
    """The scripted sandbox answer for one retried row of the answer-to-outcome table."""
    if name == "429-seconds":
        return {"status": 429, "retry_after": "2"}
    if name == "429-date":
        # Far enough ahead that the wait it asks for outlasts retry_max_seconds (1 s).
        return {
            "status": 429,
            "headers": {"Retry-After": email.utils.formatdate(time.time() + 5, usegmt=True)},
        }
    if name == "502-html":
        return {"status": 502, "html": True}
    if name == "reset":
        return {"reset": True}
    if name == "read-timeout":
        return {"hang": 30}
    return {"status": int(name)}


@pytest.mark.parametrize("name", RETRIED)
def test_upload_fault_is_retried_then_sent(
    name: str,
    tmp_path: Path,
    sandbox: SandboxProcess,
    processes: list[SandboxProcess | DaemonProcess],
) -> None:
    config, folder = one_group(tmp_path, sandbox_env(tmp_path, sandbox), read_timeout_seconds=1)
    daemon = start_ready(processes, config, tmp_path / "daemon.log")
    answer = fault(name)
    script_sandbox(sandbox, [answer])
    drop(folder, "users.csv", USERS)

    [receipt] = wait_for(lambda: receipts(folder), f"a receipt after {name}")
    record = read(receipt)
    assert record["status"] == 200
    assert record["attempts"] >= 2, record
    assert (receipt.parent / "users.csv").read_bytes() == USERS
    assert not errors(folder)
    sent = daemon.wait_event("batch_sent")
    waits = daemon.named("batch_waits", step="upload")
    assert waits, f"no batch_waits at step upload after {name}"
    first = waits[0]
    assert moment(first) <= moment(sent)
    answered = [e["status"] for e in daemon.named("upload_answered")]
    assert answered[0] == answer.get("status"), answered  # None: no HTTP answer at all
    assert answered[-1] == 200
    assert len(sandbox.uploads()) == 1
    if name == "429-seconds":
        assert first["retry_in_seconds"] >= 2, first
        retried = [e for e in daemon.named("upload_started") if moment(e) > moment(first)]
        waited = (moment(retried[0]) - moment(first)).total_seconds()
        assert waited >= 1.9, f"Retry-After: 2 honoured only {waited:.2f} s"
    if name == "read-timeout":
        # Not the sandbox closing the hung connection after 30 s: read_timeout_seconds (1 s).
        assert "timed out" in first["reason"], first
    if name == "429-date":
        # Backoff alone stays under retry_max_seconds (1 s): only the date explains more.
        assert 1 < first["retry_in_seconds"] <= 5, first


# -- 2. giving up -----------------------------------------------------------------------------


def test_upload_gives_up_after_give_up_after_seconds(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    config, folder = one_group(tmp_path, sandbox_env(tmp_path, sandbox), give_up_after_seconds=1)
    daemon = start_ready(processes, config, tmp_path / "daemon.log")
    script_sandbox(sandbox, [{"status": 503}] * 100)
    drop(folder, "users.csv", USERS)

    [error] = wait_for(lambda: errors(folder), "the batch to fail after giving up")
    record = read(error)
    assert record["step"] == "upload"
    assert record["status"] == 503
    assert "gave up" in record["reason"], record["reason"]
    assert record["attempts"] >= 2
    assert (error.parent / "users.csv").read_bytes() == USERS
    assert not receipts(folder) and sandbox.uploads() == []
    assert daemon.named("batch_waits", step="upload")
    daemon.wait_event("batch_failed", step="upload")


# -- 3. other 4xx fail at once ----------------------------------------------------------------

REFUSALS: dict[str, tuple[int, dict[str, Any]]] = {
    "no-files": (400, {"message": "No files to process", "fileErrors": None}),
    "parse-error": (400, {"message": "Error parsing uploaded files", "fileErrors": FILE_ERRORS}),
    "forbidden": (
        403,
        {"message": "User (unit-a) is not authorized to upload files", "fileErrors": None},
    ),
}


@pytest.mark.parametrize("name", sorted(REFUSALS))
def test_upload_other_4xx_fails_at_once_with_the_servers_message(
    name: str,
    tmp_path: Path,
    sandbox: SandboxProcess,
    processes: list[SandboxProcess | DaemonProcess],
) -> None:
    status, body = REFUSALS[name]
    config, folder = one_group(tmp_path, sandbox_env(tmp_path, sandbox))
    daemon = start_ready(processes, config, tmp_path / "daemon.log")
    script_sandbox(sandbox, [{"status": status, "body": body}])
    drop(folder, "users.csv", USERS)

    [error] = wait_for(lambda: errors(folder), f"the batch to fail with {status}")
    record = read(error)
    assert record["step"] == "upload"
    assert record["status"] == status
    assert body["message"] in record["reason"]
    assert record["answer"] == body, "the server's message and fileErrors are kept whole"
    assert record["attempts"] == 1
    assert (error.parent / "users.csv").read_bytes() == USERS
    daemon.wait_event("batch_failed", step="upload")
    assert not daemon.named("batch_waits")
    assert not receipts(folder) and sandbox.uploads() == []


def test_upload_non_json_refusal_is_kept_cut_to_2000_characters(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    page = "<html><body><h1>400 Bad Request</h1>" + "proxy says no. " * 400 + "</body></html>"
    config, folder = one_group(tmp_path, sandbox_env(tmp_path, sandbox))
    start_ready(processes, config, tmp_path / "daemon.log")
    script_sandbox(sandbox, [{"status": 400, "body": page}])
    drop(folder, "users.csv", USERS)

    [error] = wait_for(lambda: errors(folder), "the batch to fail with an HTML 400")
    record = read(error)
    assert record["status"] == 400 and record["step"] == "upload"
    answer = record["answer"]
    assert isinstance(answer, str)
    assert 100 <= len(answer) <= 2000, len(answer)
    assert page.startswith(answer)
    assert record["attempts"] == 1


# -- 4, 5. a revoked token, an expired token --------------------------------------------------


def test_upload_revoked_token_is_renewed_once_on_401(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    config, folder = one_group(tmp_path, sandbox_env(tmp_path, sandbox))
    daemon = start_ready(processes, config, tmp_path / "daemon.log")
    drop(folder, "users.csv", USERS)
    wait_for(lambda: receipts(folder), "the first batch's receipt")
    assert len(daemon.named("token_fetched")) == 1

    revoke_tokens(sandbox)
    drop(folder, "courses.csv", COURSES)
    wait_for(lambda: len(receipts(folder)) == 2, "the second batch's receipt")

    second = next(read(r) for r in receipts(folder) if read(r)["files"][0]["name"] == "courses.csv")
    assert second["status"] == 200
    assert len(daemon.named("token_fetched")) == 2, "a new token after the 401"
    refused = daemon.named("upload_answered", status=401)
    assert [e["outcome"] for e in refused] == ["unauthorized"]
    assert not errors(folder)
    assert len(sandbox.uploads()) == 2


def test_upload_token_expired_between_batches_is_fetched_again_without_a_401(
    tmp_path: Path, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    sandbox = start_sandbox(tmp_path / "store", [f"unit-a:{SECRET}"], "--token-lifetime", "2")
    processes.append(sandbox)
    config, folder = one_group(tmp_path, sandbox_env(tmp_path, sandbox))
    daemon = start_ready(processes, config, tmp_path / "daemon.log")
    drop(folder, "users.csv", USERS)
    wait_for(lambda: receipts(folder), "the first batch's receipt")
    cache = tmp_path / "state" / "tokens" / "test.json"
    first = read(cache)
    assert first["lifetime"] == 2
    # Past the token's end: dropd counts from before its request, the sandbox from its
    # answer, and half a second covers the gap. A stale token now gets a 401.
    wait_for(lambda: time.time() > first["expires_at"] + 0.5, "the first token to expire")

    drop(folder, "courses.csv", COURSES)
    wait_for(lambda: len(receipts(folder)) == 2, "the second batch's receipt")
    assert len(daemon.named("token_fetched")) == 2
    assert not daemon.named("upload_answered", status=401), "renewed ahead, not after a 401"
    assert read(cache)["access_token"] != first["access_token"]
    assert all(read(r)["status"] == 200 for r in receipts(folder))


# -- 6. token endpoint down, then up ----------------------------------------------------------


def test_upload_token_endpoint_down_then_up_waits_then_sends(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    config, folder = one_group(tmp_path, sandbox_env(tmp_path, sandbox))
    daemon = start_ready(processes, config, tmp_path / "daemon.log")
    script_sandbox(sandbox, [{"endpoint": "token", "status": 503}] * 4)
    drop(folder, "users.csv", USERS)

    status = daemon.wait_status("music", status="Error")
    assert status["step"] == "token", status
    assert "503" in status["reason"], status
    assert not errors(folder), "a token problem never fails a batch"
    waits = daemon.named("batch_waits")
    assert waits and {w["step"] for w in waits} == {"token"}

    [receipt] = wait_for(lambda: receipts(folder), "the receipt once tokens come again")
    assert read(receipt)["status"] == 200
    assert len(daemon.named("batch_waits", step="token")) >= 2
    assert len(daemon.named("token_fetched")) == 1
    daemon.wait_status("music", status="Valid")
    assert not errors(folder) and not (folder / "failed").exists()


# -- 7. the token cache across a restart ------------------------------------------------------


def test_upload_token_is_reused_across_a_restart(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    config, folder = one_group(tmp_path, sandbox_env(tmp_path, sandbox))
    first = start_ready(processes, config, tmp_path / "first.log")
    drop(folder, "users.csv", USERS)
    wait_for(lambda: receipts(folder), "the first run's receipt")
    assert first.stop() == 0
    cache = tmp_path / "state" / "tokens" / "test.json"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.parent.stat().st_mode) == 0o700
    token = read(cache)["access_token"]

    second = start_ready(processes, config, tmp_path / "second.log")
    drop(folder, "courses.csv", COURSES)
    wait_for(lambda: len(receipts(folder)) == 2, "the second run's receipt")
    assert second.stop() == 0
    fetches = (len(first.named("token_fetched")), len(second.named("token_fetched")))
    print(f"token fetches over a restart: first run {fetches[0]}, second run {fetches[1]}")
    assert fetches == (1, 0)
    assert read(cache)["access_token"] == token
    assert all(read(r)["status"] == 200 for r in receipts(folder))
    assert len(sandbox.uploads()) == 2


# -- 8. one group waits, another keeps going --------------------------------------------------


def test_upload_one_group_retrying_does_not_hold_up_another(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    box_a, (box_b, environment_b) = sandbox, second_sandbox(tmp_path, processes)
    music, art = drop_folders(tmp_path, "music", "art").values()
    environments = {
        "a": sandbox_environment(box_a, "unit-a", write_secret(tmp_path / "a", SECRET)),
        "b": environment_b,
    }
    groups = {
        "music": {"environment": "a", "folder": str(music)},
        "art": {"environment": "b", "folder": str(art)},
    }
    # A long first wait for music: were groups held up by another's retry, art would go up
    # only after music's second attempt.
    config = toml_config(
        tmp_path, environments, groups, retry_initial_seconds=20, retry_max_seconds=30
    )
    daemon = start_ready(processes, config, tmp_path / "daemon.log")
    script_sandbox(box_a, [{"status": 503}] * 5)
    drop(music, "users.csv", USERS)
    waiting = daemon.wait_event("batch_waits", group="music", step="upload")
    assert waiting["retry_in_seconds"] >= 10

    drop(art, "users.csv", USERS)
    [receipt] = wait_for(lambda: receipts(art), "art's receipt while music waits")
    assert read(receipt)["status"] == 200
    assert len(daemon.named("upload_started", group="music")) == 1, "art went up first"
    assert not receipts(music) and not errors(music), "music is still waiting"
    assert box_a.uploads() == [] and len(box_b.uploads()) == 1
    assert (music / ".dropd" / "work" / waiting["batch"]).is_dir()
    assert not daemon.named("batch_waits", group="art")


# -- 9. TLS with a campus CA ------------------------------------------------------------------


def self_signed(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made by `openssl`; skips without it."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes"),
            *("-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def https_proxy(sandbox: SandboxProcess, cert: Path, key: Path) -> HttpProxy:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return HttpProxy(sandbox.url, context)


# requests trusts $REQUESTS_CA_BUNDLE (else $CURL_CA_BUNDLE, else certifi) unless told
# otherwise; many hosts set it to the system bundle. `ca_bundle` must win either way.
CA_ENVIRONMENTS = ["no-ca-variables", "requests-ca-bundle-set"]


@pytest.mark.parametrize("ca_variables", CA_ENVIRONMENTS)
def test_upload_tls_trusts_the_ca_bundle_and_nothing_else(
    ca_variables: str,
    tmp_path: Path,
    proxies: list[HttpProxy],
    sandbox: SandboxProcess,
    processes: list[SandboxProcess | DaemonProcess],
) -> None:
    cert, key = self_signed(tmp_path, "campus")
    # An empty value is as good as unset for requests; else a bundle that trusts another CA.
    host_bundle = "" if ca_variables == "no-ca-variables" else str(self_signed(tmp_path, "host")[0])
    env = {"REQUESTS_CA_BUNDLE": host_bundle, "CURL_CA_BUNDLE": host_bundle}
    trusted, untrusted = https_proxy(sandbox, cert, key), https_proxy(sandbox, cert, key)
    proxies += [trusted, untrusted]
    secret = write_secret(tmp_path / "s", SECRET)
    environments = {
        "campus": {
            "token_url": trusted.url + "/oauth/token",
            "base_url": trusted.url,
            "client_id": "unit-a",
            "client_secret_file": str(secret),
            "ca_bundle": str(cert),
        },
        "plain": {
            "token_url": untrusted.url + "/oauth/token",
            "base_url": untrusted.url,
            "client_id": "unit-a",
            "client_secret_file": str(secret),
        },
    }
    music, art = tmp_path / "drop" / "music", tmp_path / "drop" / "art"
    music.mkdir(parents=True)
    art.mkdir(parents=True)
    groups = {
        "music": {"environment": "campus", "folder": str(music)},
        "art": {"environment": "plain", "folder": str(art)},
    }
    config = toml_config(tmp_path, environments, groups, **FAST)
    daemon = start_ready(processes, config, tmp_path / "daemon.log", env)
    drop(music, "users.csv", USERS)
    drop(art, "users.csv", USERS)

    waiting = daemon.wait_event("batch_waits", group="art")
    assert waiting["step"] == "token", waiting
    status = daemon.wait_status("art", status="Error")
    assert status["step"] == "token"
    assert untrusted.forwarded == [], "nothing goes to an untrusted server"

    wait_for(
        lambda: receipts(music) or daemon.named("batch_waits", group="music"),
        "music's receipt over TLS with ca_bundle (or its first failure)",
    )
    refused = [w["reason"] for w in daemon.named("batch_waits", group="music")]
    assert not refused, f"with ca_bundle the server is trusted, yet: {refused[0]}"
    [receipt] = receipts(music)
    assert read(receipt)["status"] == 200
    assert read(receipt)["url"].startswith("https://127.0.0.1:")
    assert trusted.forwarded == ["/oauth/token", "/rest/upload/music/zip"]
    assert not receipts(art) and not errors(art)
    assert untrusted.forwarded == [] and len(sandbox.uploads()) == 1
    assert "certificate" in status["reason"].lower(), (
        f"the reason should say the certificate is not trusted: {status['reason']!r}"
    )
    daemon.stop()


# -- 10. no secret, no token in anything dropd writes -----------------------------------------


class WrittenFiles:
    """Every version of every file under `roots` (but `skip`), sampled while dropd runs.

    Status and manifests change and vanish as batches go: a look at the end would miss
    what they held on the way.
    """

    def __init__(self, roots: list[Path], skip: Path) -> None:
        self.roots, self.skip = roots, skip
        self.versions: dict[Path, set[bytes]] = {}
        self._sampling = Sampling(self.sample, 0.02)

    def sample(self) -> None:
        for root in self.roots:
            for where, _dirs, names in os.walk(root):
                for name in names:
                    path = Path(where) / name
                    if path.is_relative_to(self.skip):
                        continue
                    with contextlib.suppress(OSError):  # renamed or removed meanwhile
                        self.versions.setdefault(path, set()).add(path.read_bytes())

    def stop(self) -> None:
        self._sampling.stop()

    def status_steps(self) -> set[str]:
        """Every step any sampled status.json showed a group in."""
        steps: set[str] = set()
        for path, texts in self.versions.items():
            if path.name == "status.json":
                for text in texts:
                    with contextlib.suppress(ValueError):  # caught mid-write: not JSON yet
                        steps |= {g["step"] for g in json.loads(text)["groups"]}
        return steps


def revoke_tokens(sandbox: SandboxProcess) -> None:
    revoke = urllib.request.Request(sandbox.url + "/_sandbox/revoke", data=b"", method="POST")
    with urllib.request.urlopen(revoke, timeout=10) as answer:
        assert answer.status == 200


def test_upload_never_writes_the_secret_or_a_token(
    tmp_path: Path,
    proxies: list[HttpProxy],
    sandbox: SandboxProcess,
    processes: list[SandboxProcess | DaemonProcess],
) -> None:
    # Tokens come through a proxy that keeps each one the sandbox hands out.
    proxy = HttpProxy(sandbox.url)
    proxies.append(proxy)
    environment = {
        "token_url": proxy.url + "/oauth/token",
        "base_url": proxy.url,
        "client_id": "unit-a",
        "client_secret_file": str(write_secret(tmp_path / "test.secret", SECRET)),
    }
    config, folder = one_group(tmp_path, environment)
    state = tmp_path / "state"
    written = WrittenFiles([folder, state], skip=state / "tokens")
    try:
        daemon = start_ready(processes, config, tmp_path / "daemon.log")
        script_sandbox(sandbox, [{"status": 503}, {"status": 502, "html": True}])
        drop(folder, "users.csv", USERS)
        wait_for(lambda: receipts(folder), "the first receipt, after two retries")
        revoke_tokens(sandbox)
        script_sandbox(sandbox, [{"endpoint": "token", "status": 503}] * 3)
        drop(folder, "courses.csv", COURSES)
        wait_for(lambda: len(receipts(folder)) == 2, "the second receipt, after a 401")
        script_sandbox(sandbox, [{"status": 400, "body": REFUSALS["parse-error"][1]}])
        drop(folder, "users.csv", USERS)
        wait_for(lambda: errors(folder), "an error.json")
        assert daemon.stop() == 0
    finally:
        written.stop()

    cached = read(state / "tokens" / "test.json")["access_token"]
    assert len(proxy.tokens) >= 2 and cached in proxy.tokens
    assert daemon.named("upload_answered", status=401), "the revoked token was tried"
    assert daemon.named("batch_waits", step="token")
    assert {"token", "upload"} <= written.status_steps(), "status.json sampled in Error"
    assert {p.name for p in written.versions} >= {"status.json", "receipt.json", "error.json"}
    texts = [(tmp_path / "daemon.log", daemon.text().encode())]
    texts += [(p, text) for p, versions in written.versions.items() for text in versions]
    for needle in [SECRET, *proxy.tokens]:
        leaks = sorted({str(p) for p, text in texts if needle.encode() in text})
        assert not leaks, f"a secret or token in {leaks}"
    print(f"grepped {len(texts)} file versions for the secret and {len(proxy.tokens)} tokens")
