"""One upload: a streamed multipart POST, and its answer as Sent, Retry, Failed or Unauthorized."""

from __future__ import annotations

import email.utils
import enum
import json
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from requests_toolbelt import MultipartEncoder

from daemon.regular import open_regular

ANSWER_TEXT_LIMIT = 2000  # a proxy's HTML error page is kept, cut to this many characters
SEND_BLOCK = 1 << 20  # urllib3 sends 16 KiB blocks by default; 1 MiB doubles throughput
_RETRY_STATUSES = frozenset({408, 429})


class OutcomeKind(enum.Enum):
    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"
    UNAUTHORIZED = "unauthorized"  # 401: renew the token once and try again


@dataclass(frozen=True, slots=True)
class UploadOutcome:
    kind: OutcomeKind
    reason: str
    status: int | None = None
    answer: Any = None
    retry_after: float | None = None
    seconds: float = 0.0


class _TunedAdapter(HTTPAdapter):
    """1 MiB send blocks, no urllib3 retries, and a campus CA added to the system's trust."""

    def __init__(self, ca_bundle: Path | None) -> None:
        self._ca_bundle = ca_bundle  # before super().__init__, which builds the pool manager
        super().__init__(max_retries=0)  # never let urllib3 resend a streamed body

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["blocksize"] = SEND_BLOCK
        if self._ca_bundle is not None:
            kwargs["ssl_context"] = trust_with(self._ca_bundle)
        super().init_poolmanager(*args, **kwargs)


def trust_with(ca_bundle: Path) -> ssl.SSLContext:
    """The system's trusted CAs plus `ca_bundle` (a PEM file, or a folder of hashed ones)."""
    context = ssl.create_default_context()
    if ca_bundle.is_dir():
        context.load_verify_locations(capath=str(ca_bundle))
    else:
        context.load_verify_locations(cafile=str(ca_bundle))
    return context


def mount_tls(session: requests.Session, ca_bundle: Path | None) -> None:
    """Give `session` dropd's adapter. A `ca_bundle` adds to the trust, never replaces it,
    and a session-level `verify` is never set: requests lets REQUESTS_CA_BUNDLE override it
    (psf/requests#3829)."""
    adapter = _TunedAdapter(ca_bundle)
    session.mount("https://", adapter)
    session.mount("http://", adapter)


def new_session(ca_bundle: Path | None = None) -> requests.Session:
    """A session for uploads: large send blocks, TLS verified (plus a campus CA if given)."""
    session = requests.Session()
    mount_tls(session, ca_bundle)
    return session


def untrusted_reason(exc: requests.exceptions.SSLError, host_url: str) -> str:
    """What to do when TLS fails: the server was reached, its certificate was not trusted."""
    return (
        f"the TLS certificate of {host_url} is not trusted ({type(exc).__name__}); if a "
        "campus proxy or CA signs it, give that CA in the environment's ca_bundle"
    )


def upload_url(base_url: str, group_name: str) -> str:
    """The ZIP endpoint of a group."""
    return f"{base_url}/rest/upload/{group_name}/zip"


def upload_zip(
    session: requests.Session,
    url: str,
    zip_path: Path,
    filename: str,
    token: str,
    custom_notification: bool,
    timeouts: tuple[float, float],
) -> UploadOutcome:
    """POST the ZIP at `zip_path` streamed from disk, and classify the answer."""
    started = time.monotonic()
    with open_regular(zip_path) as body:
        fields: dict[str, Any] = {"deptFileUpload": (filename, body, "application/zip")}
        if custom_notification:
            fields["customUsersNotification"] = "true"
        encoder = MultipartEncoder(fields=fields)
        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": encoder.content_type,
            "Content-Length": str(encoder.len),
            "Accept": "application/json",
        }
        try:
            response = session.post(url, data=encoder, headers=headers, timeout=timeouts)
        except requests.Timeout as exc:
            return _network(exc, "timed out", started)
        except requests.exceptions.SSLError as exc:
            reason = untrusted_reason(exc, url) + "; dropd tries again"
            return UploadOutcome(OutcomeKind.RETRY, reason, seconds=time.monotonic() - started)
        except requests.RequestException as exc:
            return _network(exc, "could not be completed", started)
    outcome = classify(response.status_code, response.headers, response.text)
    return _with_seconds(outcome, time.monotonic() - started)


def _network(exc: Exception, what: str, started: float) -> UploadOutcome:
    reason = f"the upload {what} ({type(exc).__name__}); dropd tries again"
    return UploadOutcome(OutcomeKind.RETRY, reason, seconds=time.monotonic() - started)


def _with_seconds(outcome: UploadOutcome, seconds: float) -> UploadOutcome:
    return UploadOutcome(
        outcome.kind,
        outcome.reason,
        outcome.status,
        outcome.answer,
        outcome.retry_after,
        round(seconds, 3),
    )


def classify(status: int, headers: Any, text: str, now: datetime | None = None) -> UploadOutcome:
    """Turn one HTTP answer into an outcome (DESIGN.md's table)."""
    answer = parse_answer(text)
    message = _message(answer) or f"HTTP {status}"
    if 200 <= status < 300:
        return UploadOutcome(OutcomeKind.SENT, message, status, answer)
    if status == 401:
        return UploadOutcome(
            OutcomeKind.UNAUTHORIZED, "the server refused the access token", status, answer
        )
    if status in _RETRY_STATUSES or status >= 500:
        after = retry_after_seconds(headers.get("Retry-After"), now or datetime.now(UTC))
        return UploadOutcome(
            OutcomeKind.RETRY,
            f"the server answered HTTP {status}: {message}; dropd tries again",
            status,
            answer,
            after,
        )
    return UploadOutcome(
        OutcomeKind.FAILED,
        f"the server refused the upload with HTTP {status}: {message}",
        status,
        answer,
    )


def parse_answer(text: str) -> Any:
    """The server's answer as JSON, or its text cut to a sane length."""
    try:
        return json.loads(text)
    except ValueError:
        return text[:ANSWER_TEXT_LIMIT]


def _message(answer: Any) -> str:
    if isinstance(answer, dict):
        for key in ("message", "error_description", "error"):
            if isinstance(answer.get(key), str):
                return str(answer[key])
    return ""


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """`Retry-After` as seconds from now: a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())
