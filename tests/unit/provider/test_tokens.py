"""Tests of client secrets and access tokens (daemon/auth.py), against the sandbox's endpoint."""

from __future__ import annotations

import json
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from daemon.base.errors import TRIES_AGAIN, SecretError, TokenError
from daemon.config.model import Environment, SecretKind, SecretSource, TokenAuth
from daemon.provider.tokens import Token, TokenSource, read_secret
from daemon.sandbox.server import Sandbox
from unit.clock import ManualClock

CLIENT = "my-unit"
SECRET = "s3cret-of-my-unit"
TIMEOUTS = (2.0, 5.0)


def environment(
    kind: SecretKind = SecretKind.FILE,
    value: str = "/nonexistent",
    token_url: str = "https://apps-test.iu.edu/uaa-stg/oauth/token",
    token_auth: TokenAuth = TokenAuth.BASIC,
) -> Environment:
    return Environment(
        name="test",
        token_url=token_url,
        base_url="https://lms-lti-3rdpartyprovisioning-stg.apps-test.iu.edu",
        client_id=CLIENT,
        secret=SecretSource(kind, value),
        token_auth=token_auth,
    )


# -- read_secret ----------------------------------------------------------------------------


def test_read_secret_from_file_strips_the_trailing_newline(tmp_path: Path) -> None:
    path = tmp_path / "test.secret"
    path.write_text(SECRET + "\n")
    path.chmod(0o600)
    assert read_secret(environment(SecretKind.FILE, str(path)), environ={}) == SECRET


@pytest.mark.parametrize("content", ["", "\n", "  \r\n"])
def test_read_secret_empty_file_raises(tmp_path: Path, content: str) -> None:
    path = tmp_path / "test.secret"
    path.write_text(content)
    with pytest.raises(SecretError) as caught:
        read_secret(environment(SecretKind.FILE, str(path)), environ={})
    assert caught.value.environment == "test"
    assert "empty" in caught.value.reason


def test_read_secret_missing_file_raises_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "missing.secret"
    with pytest.raises(SecretError) as caught:
        read_secret(environment(SecretKind.FILE, str(path)), environ={})
    assert str(path) in caught.value.reason


def test_read_secret_file_readable_by_others_still_works_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "test.secret"
    path.write_text(SECRET + "\n")
    path.chmod(0o644)
    with capture_logs() as logs:
        secret = read_secret(environment(SecretKind.FILE, str(path)), environ={})
    assert secret == SECRET
    assert [entry["event"] for entry in logs] == ["secret_file_readable_by_others"]
    assert SECRET not in json.dumps(logs)


def test_read_secret_from_environment_variable() -> None:
    env = environment(SecretKind.ENV, "DROPD_TEST_SECRET")
    assert read_secret(env, environ={"DROPD_TEST_SECRET": SECRET + "\n"}) == SECRET


def test_read_secret_missing_environment_variable_names_it() -> None:
    env = environment(SecretKind.ENV, "DROPD_TEST_SECRET")
    with pytest.raises(SecretError) as caught:
        read_secret(env, environ={"OTHER": "x"})
    assert "DROPD_TEST_SECRET" in str(caught.value)


def test_read_secret_empty_environment_variable_raises() -> None:
    env = environment(SecretKind.ENV, "DROPD_TEST_SECRET")
    with pytest.raises(SecretError):
        read_secret(env, environ={"DROPD_TEST_SECRET": ""})


def test_read_secret_from_credentials_directory(tmp_path: Path) -> None:
    (tmp_path / "dropd-test").write_text(SECRET + "\n")
    env = environment(SecretKind.CREDENTIAL, "dropd-test")
    assert read_secret(env, environ={"CREDENTIALS_DIRECTORY": str(tmp_path)}) == SECRET


def test_read_secret_credential_without_credentials_directory_raises() -> None:
    env = environment(SecretKind.CREDENTIAL, "dropd-test")
    with pytest.raises(SecretError) as caught:
        read_secret(env, environ={})
    assert "CREDENTIALS_DIRECTORY" in caught.value.reason


def test_read_secret_missing_credential_raises(tmp_path: Path) -> None:
    env = environment(SecretKind.CREDENTIAL, "dropd-test")
    with pytest.raises(SecretError) as caught:
        read_secret(env, environ={"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert "dropd-test" in caught.value.reason


# -- Token ----------------------------------------------------------------------------------


def test_token_fresh_until_the_renewal_margin() -> None:
    token = Token("t", expires_at=4600.0, lifetime=3600.0)  # margin: 60 s
    assert token.fresh(1000.0)
    assert token.fresh(4539.9)
    assert not token.fresh(4540.0)
    assert not token.fresh(5000.0)


def test_token_fresh_short_lived_token_renews_at_a_fifth_of_its_life() -> None:
    token = Token("t", expires_at=100.0, lifetime=100.0)  # margin: 20 s, not 60
    assert token.fresh(79.9)
    assert not token.fresh(80.0)


# -- TokenSource against the sandbox --------------------------------------------------------


@pytest.fixture(autouse=True)
def _restore_oauthlib_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    # TokenSource sets OAUTHLIB_INSECURE_TRANSPORT for http:// loopback URLs; undo it after.
    monkeypatch.delenv("OAUTHLIB_INSECURE_TRANSPORT", raising=False)


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    with Sandbox(tmp_path / "store", clients={CLIENT: SECRET}, token_lifetime=100.0) as running:
        yield running


def source_for(
    sandbox: Sandbox,
    state_dir: Path,
    secret: str = SECRET,
    clock: ManualClock | None = None,
    token_auth: TokenAuth = TokenAuth.BASIC,
) -> TokenSource:
    env = environment(token_url=sandbox.token_url, token_auth=token_auth)
    return TokenSource(env, secret, state_dir, TIMEOUTS, clock or ManualClock(1000.0))


def cached(state_dir: Path) -> dict[str, object]:
    data = json.loads((state_dir / "tokens" / "test.json").read_text())
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize("token_auth", list(TokenAuth))
def test_token_source_fetches_and_caches_with_mode_0600(
    sandbox: Sandbox, tmp_path: Path, token_auth: TokenAuth
) -> None:
    state = tmp_path / "state"
    tokens = source_for(sandbox, state, token_auth=token_auth)

    token = tokens.get()

    assert token
    path = state / "tokens" / "test.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = cached(state)
    assert data["access_token"] == token
    assert data["expires_at"] == 1100.0
    assert data["token_url"] == sandbox.token_url
    assert SECRET not in path.read_text()
    assert [p.name for p in path.parent.iterdir()] == ["test.json"]


def test_token_source_never_writes_the_token_through_a_link(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    state, elsewhere = tmp_path / "state", tmp_path / "elsewhere"
    state.mkdir()
    elsewhere.mkdir()
    (state / "tokens").symlink_to(elsewhere)
    tokens = source_for(sandbox, state)
    assert tokens.get()  # the token works; only its cache is refused
    assert list(elsewhere.iterdir()) == []


def test_token_source_keeps_the_token_in_memory(sandbox: Sandbox, tmp_path: Path) -> None:
    tokens = source_for(sandbox, tmp_path / "state")
    first = tokens.get()
    sandbox.stop()  # any new fetch would fail now
    assert tokens.get() == first


def test_token_source_second_source_reuses_the_cached_token(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    first = source_for(sandbox, state).get()
    second = source_for(sandbox, state, clock=ManualClock(1050.0))
    sandbox.stop()  # a fetch by the second source would raise TokenError

    assert second.get() == first


def test_token_source_cache_of_another_client_is_not_used(sandbox: Sandbox, tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = source_for(sandbox, state).get()
    data = cached(state) | {"client_id": "someone-else"}
    (state / "tokens" / "test.json").write_text(json.dumps(data))
    assert source_for(sandbox, state).get() != first


def test_token_source_renews_near_expiry(sandbox: Sandbox, tmp_path: Path) -> None:
    state = tmp_path / "state"
    clock = ManualClock(1000.0)
    tokens = source_for(sandbox, state, clock=clock)
    first = tokens.get()

    clock.now = 1079.0  # lifetime 100 s, margin 20 s: still fresh
    assert tokens.get() == first

    clock.now = 1080.0
    second = tokens.get()
    assert second != first
    assert cached(state)["access_token"] == second
    assert cached(state)["expires_at"] == 1180.0


def test_token_source_expired_cache_is_renewed(sandbox: Sandbox, tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = source_for(sandbox, state).get()
    later = source_for(sandbox, state, clock=ManualClock(2000.0)).get()
    assert later != first


def test_token_source_invalidate_forgets_memory_and_file(sandbox: Sandbox, tmp_path: Path) -> None:
    state = tmp_path / "state"
    tokens = source_for(sandbox, state)
    first = tokens.get()

    tokens.invalidate("some-older-token")
    assert tokens.get() == first  # a stale 401 does not throw away a newer token

    tokens.invalidate(first)
    assert not (state / "tokens" / "test.json").exists()
    assert tokens.get() != first


def test_token_source_wrong_secret_is_rejected(sandbox: Sandbox, tmp_path: Path) -> None:
    tokens = source_for(sandbox, tmp_path / "state", secret="not-the-secret")
    with pytest.raises(TokenError) as caught:
        tokens.get()
    assert caught.value.rejected
    assert caught.value.environment == "test"
    assert CLIENT in caught.value.reason
    assert "not-the-secret" not in str(caught.value)
    assert not caught.value.retryable and not str(caught.value).endswith(TRIES_AGAIN)
    assert not (tmp_path / "state" / "tokens" / "test.json").exists()


@pytest.mark.parametrize("status", [503, 502, 429])
def test_token_source_endpoint_trouble_is_not_a_rejection(
    sandbox: Sandbox, tmp_path: Path, status: int
) -> None:
    sandbox.script([{"endpoint": "token", "status": status}])
    tokens = source_for(sandbox, tmp_path / "state")
    with pytest.raises(TokenError) as caught:
        tokens.get()
    assert not caught.value.rejected
    assert str(status) in caught.value.reason
    assert tokens.get()  # the next request is answered normally


def test_token_source_html_error_page_is_a_token_error(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.script([{"endpoint": "token", "status": 404, "html": True}])
    with pytest.raises(TokenError) as caught:
        source_for(sandbox, tmp_path / "state").get()
    assert not caught.value.rejected


def test_token_source_nothing_listening_is_a_token_error(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = environment(token_url=f"http://127.0.0.1:{port}/oauth/token")
    tokens = TokenSource(env, SECRET, tmp_path / "state", (1.0, 1.0), ManualClock(1000.0))
    with pytest.raises(TokenError) as caught:
        tokens.get()
    assert not caught.value.rejected
    assert str(port) in caught.value.reason
    assert not caught.value.retryable, "its sentence says what to check, not that it waits"


def test_token_source_hung_endpoint_times_out(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.script([{"endpoint": "token", "hang": 5}])
    env = environment(token_url=sandbox.token_url)
    tokens = TokenSource(env, SECRET, tmp_path / "state", (1.0, 0.2), ManualClock(1000.0))
    with pytest.raises(TokenError) as caught:
        tokens.get()
    assert not caught.value.rejected


def test_token_source_tells_on_fetch_each_fetch_and_its_result(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    told: list[tuple[str, str]] = []
    env = environment(token_url=sandbox.token_url)

    def on_fetch(environment: str, result: str) -> None:
        told.append((environment, result))

    def source(secret: str, state: str) -> TokenSource:
        return TokenSource(env, secret, tmp_path / state, TIMEOUTS, ManualClock(1000.0), on_fetch)

    good = source(SECRET, "a")
    good.get()
    good.get()  # from memory: no fetch
    sandbox.script([{"endpoint": "token", "status": 503}])
    with pytest.raises(TokenError):
        source(SECRET, "b").get()
    with pytest.raises(TokenError):
        source("not-the-secret", "c").get()

    assert told == [("test", "ok"), ("test", "failed"), ("test", "rejected")]


# -- answers that are no token ----------------------------------------------------------------


def fetch_error(sandbox: Sandbox, state_dir: Path, answer: dict[str, object]) -> TokenError:
    """The TokenError of a fetch answered with scripted `answer`; the fetch after it works."""
    sandbox.script([{"endpoint": "token", **answer}])
    tokens = source_for(sandbox, state_dir)
    with pytest.raises(TokenError) as caught:
        tokens.get()
    assert not caught.value.rejected, "dropd tries again: no credential was refused"
    assert caught.value.environment == "test"
    assert sandbox.token_url in caught.value.reason, caught.value.reason
    assert caught.value.retryable, "the endpoint may answer otherwise next time"
    assert not caught.value.reason.endswith(TRIES_AGAIN), "the reason is the cause alone"
    assert said(caught.value).endswith("; dropd tries again")
    assert not (state_dir / "tokens" / "test.json").exists(), "nothing was cached"
    assert tokens.get(), "the next, unscripted answer is a token"
    return caught.value


def said(error: TokenError) -> str:
    """The sentence a person reads: the reason, and that dropd tries again."""
    return str(error).removeprefix(f"environment {error.environment}: ")


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_token_source_never_follows_a_redirect(
    sandbox: Sandbox, tmp_path: Path, status: int
) -> None:
    answer = {"status": status, "location": "/_sandbox/elsewhere"}
    error = fetch_error(sandbox, tmp_path / "state", answer)
    assert sandbox.elsewhere.hits == 0, "the redirect was followed"
    assert said(error) == (
        f"the token endpoint {sandbox.token_url} answered HTTP {status}, a redirect to "
        f'"{sandbox.url}/_sandbox/elsewhere", which dropd never follows (the token server '
        "never redirects); check token_url; dropd tries again"
    )


def test_token_source_3xx_without_location_is_a_token_error(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    error = fetch_error(sandbox, tmp_path / "state", {"status": 300})
    assert "HTTP 300 with no Location header" in error.reason


def test_token_source_html_sign_in_page_names_content_type_and_title(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    answer = {"status": 200, "html": True, "title": "Sign in to Campus SSO"}
    error = fetch_error(sandbox, tmp_path / "state", answer)
    assert said(error) == (
        f"the token endpoint {sandbox.token_url} answered HTTP 200 with text/html "
        '(page title "Sign in to Campus SSO"), not a token: a proxy, captive portal or '
        "sign-in page answered instead of the token server; dropd tries again"
    )


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ("", "HTTP 200 with text/plain (empty body)"),
        ("access_token=abc&expires_in=60", 'HTTP 200 with text/plain (body "access_token='),
        ("[]", 'HTTP 200 with text/plain (body "[]")'),
    ],
)
def test_token_source_non_json_or_non_object_answer_is_a_token_error(
    sandbox: Sandbox, tmp_path: Path, body: str, said: str
) -> None:
    error = fetch_error(sandbox, tmp_path / "state", {"status": 200, "body": body})
    assert said in error.reason, error.reason
    assert "abc" not in error.reason, "a token-shaped value is never shown"


@pytest.mark.parametrize(
    "body",
    [
        {"token_type": "bearer", "expires_in": 60},
        {"access_token": "", "expires_in": 60},
        {"access_token": "   ", "expires_in": 60},
        {"access_token": 12345678, "expires_in": 60},
        {"access_token": None},
    ],
)
def test_token_source_json_without_a_usable_access_token_is_a_token_error(
    sandbox: Sandbox, tmp_path: Path, body: dict[str, object]
) -> None:
    error = fetch_error(sandbox, tmp_path / "state", {"status": 200, "body": body})
    assert said(error) == (
        f"the token endpoint {sandbox.token_url} answered HTTP 200 with no access_token "
        "(a non-empty string); dropd tries again"
    )


@pytest.mark.parametrize(
    ("expires_in", "shown"),
    [("abc", '"abc"'), (-5, "-5"), (0, "0"), ("-5", '"-5"'), ("1.5", '"1.5"'), (True, '"true"')],
)
def test_token_source_expires_in_not_a_positive_number_is_a_token_error(
    sandbox: Sandbox, tmp_path: Path, expires_in: object, shown: str
) -> None:
    body = {"access_token": "x-token-value", "token_type": "bearer", "expires_in": expires_in}
    error = fetch_error(sandbox, tmp_path / "state", {"status": 200, "body": body})
    assert said(error) == (
        f"the token endpoint {sandbox.token_url} answered HTTP 200 with an expires_in of "
        f"{shown}, not a positive number of seconds; dropd tries again"
    )
    assert "x-token-value" not in error.reason


@pytest.mark.parametrize(("expires_in", "lifetime"), [("600", 600.0), (600, 600.0), (None, 3600.0)])
def test_token_source_takes_a_whole_number_string_or_no_expires_in(
    sandbox: Sandbox, tmp_path: Path, expires_in: object, lifetime: float
) -> None:
    body = {"access_token": "y-token-value", "token_type": "bearer", "expires_in": expires_in}
    sandbox.script([{"endpoint": "token", "status": 200, "body": body}])
    tokens = source_for(sandbox, tmp_path / "state")
    assert tokens.get() == "y-token-value"
    assert cached(tmp_path / "state")["lifetime"] == lifetime


def test_token_source_oauthlib_parse_errors_are_token_errors(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Were the answer not judged first, oauthlib's int("abc") would raise ValueError.
    monkeypatch.setattr(TokenSource, "_check_answer", lambda self, response: response)
    body = {"access_token": "z-token-value", "expires_in": "abc"}
    error = fetch_error(sandbox, tmp_path / "state", {"status": 200, "body": body})
    assert "answered something that is no token (ValueError)" in error.reason


def test_token_source_4xx_json_that_is_no_oauth_error_is_a_token_error(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    body = {"message": "no such endpoint"}
    error = fetch_error(sandbox, tmp_path / "state", {"status": 404, "body": body})
    assert "answered HTTP 404 with application/json" in error.reason
    assert "check token_url" in error.reason


def test_token_source_5xx_reason_names_the_token_url(sandbox: Sandbox, tmp_path: Path) -> None:
    error = fetch_error(sandbox, tmp_path / "state", {"status": 503})
    assert said(error) == (
        f"the token endpoint {sandbox.token_url} answered HTTP 503; dropd tries again"
    )


def test_token_source_page_echoing_the_secret_keeps_no_secret(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    read_secret(environment(SecretKind.ENV, "S"), environ={"S": SECRET})  # known to the redactor
    answer = {"status": 200, "html": True, "title": f"Wrong password {SECRET}"}
    error = fetch_error(sandbox, tmp_path / "state", answer)
    assert SECRET not in str(error)
    assert "Wrong password [redacted]" in error.reason


def test_token_source_no_token_answers_are_counted_as_failed(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    told: list[str] = []
    env = environment(token_url=sandbox.token_url)
    tokens = TokenSource(
        env,
        SECRET,
        tmp_path / "state",
        TIMEOUTS,
        ManualClock(1000.0),
        lambda _env, r: told.append(r),
    )
    sandbox.script([{"endpoint": "token", "status": 302, "location": "/_sandbox/elsewhere"}])
    with pytest.raises(TokenError):
        tokens.get()
    assert told == ["failed"]
