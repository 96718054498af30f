"""The sandbox's token endpoint and bearer checks, answering as Spring Security does.

Clients authenticate with HTTP Basic or with `client_id` and `client_secret` in the form;
the `client_credentials` grant gives a random bearer token, valid for a set lifetime until
it expires or is revoked.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote_plus

_BAD_CLIENT = {"error": "invalid_client", "error_description": "Bad client credentials"}
_NO_TOKEN = {
    "error": "unauthorized",
    "error_description": "Full authentication is required to access this resource",
}
_RFC6750 = "https://tools.ietf.org/html/rfc6750#section-3.1"
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@dataclass(frozen=True, slots=True)
class JsonAnswer:
    """An answer to send: its status, its JSON body and its extra headers."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class _Grant:
    client_id: str
    expires_at: float
    revoked: bool = False


def unauthorized(problem: str) -> JsonAnswer:
    """A 401 with Spring Security's WWW-Authenticate header and an OAuth2 JSON body."""
    if not problem:
        return JsonAnswer(401, _NO_TOKEN, {"WWW-Authenticate": "Bearer"})
    header = f'Bearer error="invalid_token", error_description="{problem}", error_uri="{_RFC6750}"'
    body = {"error": "invalid_token", "error_description": problem}
    return JsonAnswer(401, body, {"WWW-Authenticate": header})


class TokenIssuer:
    """The known clients, and the tokens issued to them."""

    def __init__(
        self, clients: Mapping[str, str], lifetime: float, clock: Callable[[], float]
    ) -> None:
        self.clients = clients
        self.lifetime = lifetime
        self.clock = clock
        self._lock = threading.Lock()
        self._grants: dict[str, _Grant] = {}

    def answer(self, authorization: str, body: bytes) -> JsonAnswer:
        """The token endpoint's answer to a request with this header and form body."""
        form = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
        client_id = self.authenticate(authorization, form)
        grant_type = form.get("grant_type", [""])[0]
        if client_id is None:
            return JsonAnswer(401, _BAD_CLIENT, {"WWW-Authenticate": 'Basic realm="dropd sandbox"'})
        if not grant_type:
            problem = {"error": "invalid_request", "error_description": "Missing grant type"}
            return JsonAnswer(400, problem)
        if grant_type != "client_credentials":
            why = f"Unsupported grant type: {grant_type}"
            return JsonAnswer(400, {"error": "unsupported_grant_type", "error_description": why})
        return JsonAnswer(200, self.issue(client_id), _NO_STORE)

    def authenticate(self, authorization: str, form: dict[str, list[str]]) -> str | None:
        """The client id when the Basic header (else the form) holds a known id and secret."""
        scheme, _, value = authorization.partition(" ")
        candidates = [(form.get("client_id", [""])[0], form.get("client_secret", [""])[0])]
        if scheme.lower() == "basic":
            try:
                pair = base64.b64decode(value.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return None
            client_id, _, secret = pair.partition(":")
            # RFC 6749 form-encodes both before Basic; most clients send them raw.
            candidates = [(client_id, secret), (unquote_plus(client_id), unquote_plus(secret))]
        for client_id, secret in candidates:
            known = self.clients.get(client_id)
            if known is not None and hmac.compare_digest(known.encode(), secret.encode()):
                return client_id
        return None

    def issue(self, client_id: str) -> dict[str, Any]:
        """A new bearer token for `client_id`, as the token endpoint's JSON body."""
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._grants[token] = _Grant(client_id, self.clock() + self.lifetime)
        return {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": int(self.lifetime),
            "scope": "read write",
            "jti": uuid.uuid4().hex,
        }

    def bearer_client(self, authorization: str) -> tuple[str | None, str]:
        """The client id of a usable bearer token, else None and why ("" when none came)."""
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None, ""
        with self._lock:
            grant = self._grants.get(token.strip())
        if grant is None:
            return None, "Invalid access token"
        if grant.revoked:
            return None, "Access token has been revoked"
        if self.clock() >= grant.expires_at:
            return None, "Access token expired"
        return grant.client_id, ""

    def revoke_all(self) -> None:
        """Revoke every token issued so far."""
        with self._lock:
            for grant in self._grants.values():
                grant.revoked = True
