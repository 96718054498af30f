"""OAuth2 client-credentials tokens: read the secret, fetch, cache (memory + 0600 file), renew.

Only a JSON object with a non-empty `access_token` (and, if it says, a positive `expires_in`)
from the token endpoint itself is a token: a redirect is never followed, and a sign-in page,
a proxy's page or a malformed answer is a TokenError that names the token endpoint.
"""

from __future__ import annotations

import errno
import json
import math
import os
import stat
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
import structlog
from oauthlib.oauth2 import BackendApplicationClient, OAuth2Error
from requests_oauthlib import OAuth2Session

from daemon.base.durable import write_json_atomic
from daemon.base.errors import SecretError, TokenError
from daemon.base.log import REDACTOR
from daemon.config.model import Environment, SecretKind, TokenAuth
from daemon.provider.upload import (
    mount_tls,
    quoted,
    redirect_answered,
    untrusted_reason,
    what_answered,
)

log = structlog.get_logger()

# Renew this long before expiry, but never more than a fifth of the token's life early.
RENEW_MARGIN_SECONDS = 60.0
# Answers of the token endpoint that mean "these credentials are wrong", not "try later".
_REJECTED = frozenset(
    {"invalid_client", "unauthorized_client", "invalid_grant", "access_denied", "invalid_scope"}
)
DEFAULT_LIFETIME_SECONDS = 3600.0  # when the answer gives no expires_in


def read_secret(env: Environment, environ: Mapping[str, str] = os.environ) -> str:
    """The client secret of `env` from its file, variable or systemd credential.

    Raises SecretError if it cannot be read or is empty.
    """
    kind, value = env.secret.kind, env.secret.value
    if kind is SecretKind.ENV:
        if value not in environ:
            raise SecretError(
                env.name,
                f"client_secret_env: ${value} is not set; set it in the service's environment",
            )
        secret = environ[value]
    else:
        path = Path(value)
        if kind is SecretKind.CREDENTIAL:
            creds = environ.get("CREDENTIALS_DIRECTORY")
            if not creds:
                raise SecretError(
                    env.name,
                    f"client_secret_credential: {value!r} needs "
                    "$CREDENTIALS_DIRECTORY; give it with LoadCredential=",
                )
            path = Path(creds) / value
        secret = _read_secret_file(env.name, kind, path)
    secret = secret.strip()
    if not secret:
        raise SecretError(env.name, f"{kind.value}: the secret is empty")
    REDACTOR.add(secret)
    return secret


def _read_secret_file(env_name: str, kind: SecretKind, path: Path) -> str:
    try:
        info = path.stat()
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SecretError(
            env_name, f"{kind.value}: cannot read {path}: {exc.strerror or exc}"
        ) from exc
    if kind is SecretKind.FILE and info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning(
            "secret_file_readable_by_others",
            environment=env_name,
            path=str(path),
            mode=oct(info.st_mode & 0o777),
            fix=f"chmod 600 {path}",
        )
    return text


def token_problem(answer: Mapping[str, Any]) -> str:
    """What makes a token answer unusable, e.g. `no access_token`; "" when it is usable."""
    access = answer.get("access_token")
    if not isinstance(access, str) or not access.strip():
        return "no access_token (a non-empty string)"
    expires_in = answer.get("expires_in")
    if expires_in is not None and lifetime_seconds(expires_in) is None:
        if isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
            shown = json.dumps(expires_in)
        else:
            shown = quoted(expires_in if isinstance(expires_in, str) else json.dumps(expires_in))
        return f"an expires_in of {shown}, not a positive number of seconds"
    return ""


def lifetime_seconds(value: object) -> float | None:
    """`expires_in` as seconds: a positive number, or a string of a whole one ("3600", as
    oauthlib reads it); None for anything else."""
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value > 0 else None


def _redirect(response: requests.Response | None) -> str:
    if response is None:
        return "redirected, and dropd never follows a redirect; check token_url"
    what = redirect_answered(response.status_code, response.headers, "a token")
    return f"answered {what} (the token server never redirects); check token_url"


@dataclass(frozen=True, slots=True)
class Token:
    access_token: str
    expires_at: float  # wall-clock seconds
    lifetime: float

    def fresh(self, now: float) -> bool:
        """True while the token has more than the renewal margin left."""
        margin = min(RENEW_MARGIN_SECONDS, self.lifetime / 5)
        return now < self.expires_at - margin


def ignore_fetch(environment: str, result: str) -> None:
    """The default `on_fetch`: a token source that nobody counts."""


class TokenSource:
    """The access token of one environment: kept in memory and in `state_dir`, renewed early."""

    def __init__(
        self,
        env: Environment,
        secret: str,
        state_dir: Path,
        timeouts: tuple[float, float],
        clock: Callable[[], float] = time.time,
        on_fetch: Callable[[str, str], None] = ignore_fetch,
    ) -> None:
        self.env = env
        self._secret = secret
        self._cache_path = state_dir / "tokens" / f"{env.name}.json"
        self._timeouts = timeouts
        self._clock = clock
        # Told (environment, "ok" | "rejected" | "failed") after each fetch: the metrics.
        self._on_fetch = on_fetch
        self._token: Token | None = None
        # The groups of an environment upload from several pool threads and share the token.
        self._lock = threading.Lock()

    def get(self) -> str:
        """A token that is not about to expire. Raises TokenError if none can be had."""
        with self._lock:
            now = self._clock()
            if self._token is None:
                self._token = self._load_cached()
            if self._token is None or not self._token.fresh(now):
                self._token = self._fetch_counted(now)
                self._store(self._token)
            return self._token.access_token

    def fetch_uncached(self) -> str:
        """A new token from the token endpoint, kept nowhere: neither in memory nor in
        `state_dir` (`dropd verify` changes nothing). Raises TokenError if none can be had."""
        with self._lock:
            return self._fetch(self._clock()).access_token

    def invalidate(self, token: str) -> None:
        """Forget `token` (the server answered 401 with it), unless it was already renewed."""
        with self._lock:
            if self._token is None or self._token.access_token == token:
                self._token = None
                self._cache_path.unlink(missing_ok=True)

    def _fetch_counted(self, now: float) -> Token:
        try:
            token = self._fetch(now)
        except TokenError as exc:
            self._on_fetch(self.env.name, "rejected" if exc.rejected else "failed")
            raise
        self._on_fetch(self.env.name, "ok")
        return token

    def _fetch(self, now: float) -> Token:
        session = OAuth2Session(client=BackendApplicationClient(client_id=self.env.client_id))
        # fetch_token takes no allow_redirects: with none allowed, a redirect raises
        # TooManyRedirects holding the 3xx, and is never followed.
        session.max_redirects = 0
        session.register_compliance_hook("access_token_response", self._check_answer)
        mount_tls(session, self.env.ca_bundle)
        if urlsplit(self.env.token_url).scheme == "http":
            # config.py admits http:// only for a loopback host (the sandbox, tests).
            os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"
        started = time.monotonic()
        try:
            answer = session.fetch_token(
                token_url=self.env.token_url,
                client_id=self.env.client_id,
                client_secret=self._secret,
                include_client_id=self.env.token_auth is TokenAuth.BODY,
                timeout=self._timeouts,
            )
        except requests.TooManyRedirects as exc:
            raise self._transient(_redirect(exc.response)) from exc
        except requests.exceptions.SSLError as exc:
            raise TokenError(self.env.name, untrusted_reason(exc, self.env.token_url)) from exc
        except requests.RequestException as exc:
            raise TokenError(
                self.env.name,
                f"the token endpoint {self.env.token_url} cannot be reached: {type(exc).__name__}",
            ) from exc
        except OAuth2Error as exc:
            raise self._oauth_error(exc) from exc
        except (ValueError, TypeError, KeyError) as exc:
            # oauthlib's own parse of an answer that _check_answer let through.
            what = f"answered something that is no token ({type(exc).__name__})"
            raise self._transient(what) from exc
        finally:
            session.close()
        return self._token_from(answer, now, time.monotonic() - started)

    def _token_from(self, answer: Mapping[str, Any], now: float, seconds: float) -> Token:
        if problem := token_problem(answer):
            raise self._transient(f"answered {problem}")
        access = str(answer["access_token"])
        REDACTOR.add(access)
        lifetime = lifetime_seconds(answer.get("expires_in")) or DEFAULT_LIFETIME_SECONDS
        log.info(
            "token_fetched",
            environment=self.env.name,
            token_url=self.env.token_url,
            token_expires_in=lifetime,
            seconds=round(seconds, 3),
        )
        return Token(access, now + lifetime, lifetime)

    def _check_answer(self, response: requests.Response) -> requests.Response:
        """Judge the token endpoint's answer before oauthlib parses it: oauthlib takes any
        answer for a token, and raises ValueError on some. Anything but a token or an OAuth2
        error from the token server is a TokenError; dropd tries again."""
        status = response.status_code
        if status >= 500 or status in (408, 429):
            raise self._transient(f"answered HTTP {status}")
        if 300 <= status < 400:  # a 3xx with a Location raised TooManyRedirects already
            raise self._transient(_redirect(response))
        try:
            body = json.loads(response.text)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            what = what_answered(status, response.headers, response.text)
            raise self._transient(
                f"answered {what}, not a token: a proxy, captive portal or sign-in page "
                "answered instead of the token server"
            )
        if "error" in body:
            return response  # an OAuth2 error: oauthlib raises it, _oauth_error reads it
        if not 200 <= status < 300:
            what = what_answered(status, response.headers, response.text)
            raise self._transient(f"answered {what}, not a token; check token_url")
        if problem := token_problem(body):
            raise self._transient(f"answered HTTP {status} with {problem}")
        return response

    def _transient(self, what: str) -> TokenError:
        """A retryable TokenError naming the token endpoint and `what` it did. Redacted: a
        page or a Location could carry a secret."""
        reason = f"the token endpoint {self.env.token_url} {what}"
        return TokenError(self.env.name, REDACTOR.redact_text(reason), retryable=True)

    def _oauth_error(self, exc: OAuth2Error) -> TokenError:
        if exc.error in _REJECTED:
            return TokenError(
                self.env.name,
                f"the token endpoint rejected client "
                f"{self.env.client_id!r} ({exc.error}); check client_id and the "
                "secret, then reload dropd",
                rejected=True,
            )
        return self._transient(f"answered {exc.error}")

    def _load_cached(self) -> Token | None:
        try:
            data = json.loads(self._cache_path.read_text(encoding="utf-8"))
            if (data.get("token_url"), data.get("client_id")) != (
                self.env.token_url,
                self.env.client_id,
            ):
                return None
            token = Token(data["access_token"], float(data["expires_at"]), float(data["lifetime"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        REDACTOR.add(token.access_token)
        return token

    def _store(self, token: Token) -> None:
        data = {
            "token_url": self.env.token_url,
            "client_id": self.env.client_id,
            "access_token": token.access_token,
            "expires_at": token.expires_at,
            "lifetime": token.lifetime,
        }
        folder = self._cache_path.parent
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            if folder.is_symlink():  # never write a token through a link
                raise OSError(errno.ELOOP, "it is a symbolic link; remove it", str(folder))
            write_json_atomic(self._cache_path, data, mode=0o600)
        except OSError as exc:
            log.warning(
                "token_cache_not_written",
                environment=self.env.name,
                path=str(self._cache_path),
                reason=exc.strerror or str(exc),
            )
