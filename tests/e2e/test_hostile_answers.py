"""Only the API's own answer counts as sent: `dropd run` against a `dropd sandbox` that
answers as a sign-in page, a captive portal, a redirect or a proxy would.

Each hostile answer is played a few times, then the sandbox answers as the API does: the
batch must wait (status Error at the step, with a reason that says what answered), never be
filed under sent/ on the hostile answer, never follow a redirect, and go up on the first
real answer. A server that echoes the bearer token must not get it into any record.
"""

from __future__ import annotations

import contextlib
import json
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import (
    USERS,
    DaemonProcess,
    Sampling,
    SandboxProcess,
    drop,
    errors,
    group_status,
    music_group,
    read,
    receipts,
    script_sandbox,
    start_ready,
    wait_for,
)

SECRET = "secret-a-1234"  # the `sandbox` fixture's client secret, written by music_group
RETRY_INITIAL_SECONDS, RETRY_MAX_SECONDS = 0.2, 1  # fast retries
# Each hostile answer is played this many times: the group shows Error for a second or more
# (backoff 0.1-0.2, 0.2-0.4, 0.4-0.8, 0.5-1 s), longer than status.json takes to show it.
REPEATS = 4
ELSEWHERE = "/_sandbox/elsewhere"

# name: (the scripted answer, what the reason must name; {url} is the sandbox's URL)
HOSTILE: dict[str, tuple[dict[str, Any], list[str]]] = {
    "200-sign-in-page": (
        {"status": 200, "html": True, "title": "Sign in to Campus SSO"},
        ["HTTP 200 with text/html", '(page title "Sign in to Campus SSO")', "sign-in page"],
    ),
    "200-empty-body": (
        {"status": 200, "body": ""},
        ["HTTP 200 with text/plain (empty body)", "not the API's JSON answer"],
    ),
    "302-elsewhere": (
        {"status": 302, "location": ELSEWHERE},
        ['HTTP 302, a redirect to "{url}/_sandbox/elsewhere"', "never follows"],
    ),
    "301-elsewhere": (
        {"status": 301, "location": ELSEWHERE},
        ['HTTP 301, a redirect to "{url}/_sandbox/elsewhere"', "never follows"],
    ),
    "307-elsewhere": (
        {"status": 307, "location": ELSEWHERE},
        ['HTTP 307, a redirect to "{url}/_sandbox/elsewhere"', "never follows"],
    ),
    "200-json-without-message": (
        {"status": 200, "body": {"status": "UP", "fileErrors": None}},
        ["HTTP 200 with application/json", "not the API's JSON answer", "check base_url"],
    ),
    "502-nginx-page": (
        {"status": 502, "html": True},
        ['HTTP 502 with text/html (page title "502 Bad Gateway")'],
    ),
}


class StatusSampler:
    """Every version of `state_dir/status.json` seen while dropd runs, sampled often: a
    group's Error may last only a second, and a look at the end would miss it."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "status.json"
        self.texts: list[str] = []
        self._lock = threading.Lock()
        self._sampling = Sampling(self.sample, 0.01)

    def sample(self) -> None:
        with contextlib.suppress(OSError):  # not written yet
            text = self.path.read_text(encoding="utf-8")
            with self._lock:
                if not self.texts or self.texts[-1] != text:
                    self.texts.append(text)

    def entries(self, group: str) -> list[dict[str, Any]]:
        """The group's entry in each version seen, oldest first."""
        with self._lock:
            texts = list(self.texts)
        found = []
        for text in texts:
            with contextlib.suppress(ValueError):  # replaced atomically, but be safe
                found += [g for g in json.loads(text)["groups"] if g.get("group") == group]
        return found

    def error_at(self, group: str, step: str) -> dict[str, Any] | None:
        """The first status of `group` seen in Error at `step`, or None."""
        for entry in self.entries(group):
            if entry["status"] == "Error" and entry["step"] == step:
                return entry
        return None

    def stop(self) -> None:
        self._sampling.stop()


@pytest.fixture
def samplers() -> Iterator[list[StatusSampler]]:
    started: list[StatusSampler] = []
    yield started
    for sampler in started:
        sampler.stop()


Start = Callable[[Path], tuple[DaemonProcess, Path, StatusSampler]]


@pytest.fixture
def start(
    tmp_path: Path,
    sandbox: SandboxProcess,
    processes: list[SandboxProcess | DaemonProcess],
    samplers: list[StatusSampler],
) -> Start:
    """Start `dropd run` on group `music` (fast retries) with a status sampler; returns
    (daemon, drop folder, sampler)."""

    def started(root: Path) -> tuple[DaemonProcess, Path, StatusSampler]:
        config, folder = music_group(
            root,
            sandbox,
            retry_initial_seconds=RETRY_INITIAL_SECONDS,
            retry_max_seconds=RETRY_MAX_SECONDS,
        )
        sampler = StatusSampler(root / "state")
        samplers.append(sampler)
        daemon = start_ready(processes, config, root / "daemon.log")
        return daemon, folder, sampler

    return started


def events(daemon: DaemonProcess, event: str, **fields: Any) -> list[dict[str, Any]]:
    return [
        e
        for e in daemon.events()
        if e.get("event") == event and all(e.get(k) == v for k, v in fields.items())
    ]


def elsewhere_hits(sandbox: SandboxProcess) -> int:
    with urllib.request.urlopen(sandbox.url + "/_sandbox/elsewhere/hits", timeout=10) as answer:
        return int(json.loads(answer.read())["hits"])


def valid_again(state_dir: Path) -> dict[str, Any] | None:
    status = group_status(state_dir, "music")
    return status if status is not None and status["status"] == "Valid" else None


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_upload_answer_is_never_sent_and_the_next_real_answer_is(
    name: str, tmp_path: Path, sandbox: SandboxProcess, start: Start
) -> None:
    answer, named = HOSTILE[name]
    daemon, folder, sampler = start(tmp_path)
    script_sandbox(sandbox, [answer] * REPEATS)
    drop(folder, "users.csv", USERS)

    error = wait_for(lambda: sampler.error_at("music", "upload"), f"status Error after {name}")
    assert not receipts(folder), f"filed under sent/ on {name}"
    for part in named:
        assert part.format(url=sandbox.url) in error["reason"], error["reason"]
    assert error["reason"].endswith("; dropd tries again"), error["reason"]

    [receipt] = wait_for(lambda: receipts(folder), f"the receipt of the first real answer ({name})")
    record = read(receipt)
    assert record["status"] == 200
    assert record["attempts"] == REPEATS + 1, "sent on the first unscripted attempt, not before"
    assert (receipt.parent / "users.csv").read_bytes() == USERS
    assert not errors(folder) and not (folder / "failed").exists()
    wait_for(lambda: valid_again(tmp_path / "state"), f"status Valid after {name}")

    answered = [(e["status"], e["outcome"]) for e in events(daemon, "upload_answered")]
    assert answered == [(answer["status"], "retry")] * REPEATS + [(200, "sent")], answered
    waits = events(daemon, "batch_waits", step="upload")
    assert len(waits) == REPEATS and all(w["reason"] == error["reason"] for w in waits)
    assert len(sandbox.uploads()) == 1, "only the real answer's upload was kept"
    assert elsewhere_hits(sandbox) == 0, "a redirect was followed"
    assert daemon.process.poll() is None, f"dropd exited:\n{daemon.text()}"


def test_token_answer_with_a_bad_expires_in_waits_at_token_then_sends(
    tmp_path: Path, sandbox: SandboxProcess, start: Start
) -> None:
    daemon, folder, sampler = start(tmp_path)
    body = {"access_token": "x", "token_type": "bearer", "expires_in": "abc"}
    script_sandbox(sandbox, [{"endpoint": "token", "status": 200, "body": body}] * REPEATS)
    drop(folder, "users.csv", USERS)

    error = wait_for(lambda: sampler.error_at("music", "token"), "status Error at step token")
    assert error["reason"] == (
        f"the token endpoint {sandbox.token_url} answered HTTP 200 with an expires_in of "
        '"abc", not a positive number of seconds; dropd tries again'
    )
    assert not receipts(folder) and not errors(folder), "a token problem never fails a batch"

    [receipt] = wait_for(lambda: receipts(folder), "the receipt once a real token comes")
    record = read(receipt)
    assert record["status"] == 200 and record["attempts"] == 1
    wait_for(lambda: valid_again(tmp_path / "state"), "status Valid after the token came")
    assert len(events(daemon, "batch_waits", step="token")) == REPEATS
    assert len(events(daemon, "token_fetched")) == 1
    assert not events(daemon, "delivery_crashed"), "an internal error, not a TokenError"
    assert read(tmp_path / "state" / "tokens" / "test.json")["access_token"] != "x"
    assert elsewhere_hits(sandbox) == 0
    assert daemon.process.poll() is None, f"dropd exited:\n{daemon.text()}"


def test_400_echoing_the_bearer_token_fails_the_batch_without_keeping_the_token(
    tmp_path: Path, sandbox: SandboxProcess, start: Start
) -> None:
    daemon, folder, sampler = start(tmp_path)
    script_sandbox(sandbox, [{"status": 400, "echo_authorization": True}])
    drop(folder, "users.csv", USERS)

    [error_json] = wait_for(lambda: errors(folder), "the batch to fail with the 400")
    record = read(error_json)
    assert record["step"] == "upload" and record["status"] == 400
    assert record["attempts"] == 1, "a 400 fails at once"
    assert record["answer"]["message"] == "bad request from Bearer [redacted]"
    assert record["reason"] == (
        "the server refused the upload with HTTP 400: bad request from Bearer [redacted]"
    )
    assert (error_json.parent / "users.csv").read_bytes() == USERS
    assert not receipts(folder) and sandbox.uploads() == []
    status = wait_for(lambda: sampler.error_at("music", "upload"), "status Error at upload")
    assert status["reason"] == record["reason"]
    daemon.wait_event("batch_failed", step="upload")
    assert daemon.process.poll() is None, f"dropd exited:\n{daemon.text()}"

    sampler.stop()
    token = read(tmp_path / "state" / "tokens" / "test.json")["access_token"]
    assert len(token) >= 8
    texts = {
        "error.json": error_json.read_text(encoding="utf-8"),
        "daemon.log": daemon.text(),
        **{f"status.json #{n}": text for n, text in enumerate(sampler.texts)},
    }
    assert any("status.json" in where for where in texts)
    for needle in (token, SECRET):
        leaks = sorted(where for where, text in texts.items() if needle in text)
        assert not leaks, f"the token or the secret in {leaks}"
