"""OAuth2 client-credentials tokens: read the secret, fetch, cache (memory + 0600 file), renew."""

from __future__ import annotations

import json
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

from daemon.api import mount_tls, untrusted_reason
from daemon.config import Environment, SecretKind, TokenAuth
from daemon.errors import SecretError, TokenError
from daemon.log import REDACTOR

log = structlog.get_logger()

# Renew this long before expiry, but never more than a fifth of the token's life early.
RENEW_MARGIN_SECONDS = 60.0
# Answers of the token endpoint that mean "these credentials are wrong", not "try later".
_REJECTED = frozenset(
    {"invalid_client", "unauthorized_client", "invalid_grant", "access_denied", "invalid_scope"}
)


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
        except requests.exceptions.SSLError as exc:
            raise TokenError(self.env.name, untrusted_reason(exc, self.env.token_url)) from exc
        except requests.RequestException as exc:
            raise TokenError(
                self.env.name,
                f"the token endpoint {self.env.token_url} cannot be reached: {type(exc).__name__}",
            ) from exc
        except OAuth2Error as exc:
            raise self._oauth_error(exc) from exc
        finally:
            session.close()
        return self._token_from(answer, now, time.monotonic() - started)

    def _token_from(self, answer: Mapping[str, Any], now: float, seconds: float) -> Token:
        access = str(answer["access_token"])
        REDACTOR.add(access)
        lifetime = float(answer.get("expires_in") or 3600)
        log.info(
            "token_fetched",
            environment=self.env.name,
            token_url=self.env.token_url,
            token_expires_in=lifetime,
            seconds=round(seconds, 3),
        )
        return Token(access, now + lifetime, lifetime)

    def _check_answer(self, response: requests.Response) -> requests.Response:
        # requests-oauthlib parses any answer as a token; 5xx and 429 must mean "try later".
        if response.status_code >= 500 or response.status_code in (408, 429):
            raise TokenError(
                self.env.name,
                f"the token endpoint answered HTTP {response.status_code}; dropd tries again",
            )
        return response

    def _oauth_error(self, exc: OAuth2Error) -> TokenError:
        if exc.error in _REJECTED:
            return TokenError(
                self.env.name,
                f"the token endpoint rejected client "
                f"{self.env.client_id!r} ({exc.error}); check client_id and the "
                "secret, then reload dropd",
                rejected=True,
            )
        return TokenError(
            self.env.name, f"the token endpoint answered {exc.error}; dropd tries again"
        )

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
        try:
            self._cache_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp = self._cache_path.with_name(f".{self._cache_path.name}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(data, out)
            os.replace(tmp, self._cache_path)
        except OSError as exc:
            log.warning(
                "token_cache_not_written",
                environment=self.env.name,
                path=str(self._cache_path),
                reason=exc.strerror or str(exc),
            )
