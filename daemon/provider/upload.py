"""One upload: a streamed multipart POST, and its answer as Sent, Retry, Failed or Unauthorized.

Only the API's own answer counts as sent: a 2xx whose body is a JSON object with a string
`message`. Whatever else answers a 2xx (a sign-in page, a captive portal, an empty body) and
every 3xx (redirects are never followed) is retried, with a reason that says what answered.
A reason names the cause only: whoever shows it says what dropd does next.
"""

from __future__ import annotations

import email.utils
import enum
import html
import json
import re
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from requests_toolbelt import MultipartEncoder

from daemon.base.log import REDACTOR
from daemon.base.regular import open_regular

ANSWER_TEXT_LIMIT = 2000  # a proxy's HTML error page is kept, cut to this many characters
QUOTE_LIMIT = 200  # a page title, Location or body quoted in a reason is cut to this
SEND_BLOCK = 1 << 20  # urllib3 sends 16 KiB blocks by default; 1 MiB doubles throughput
_RETRY_STATUSES = frozenset({408, 429})
_TITLE = re.compile(r"<title[^>]*>(.*?)</title\s*>", re.IGNORECASE | re.DOTALL)
_TITLE_SEARCH_CHARS = 65536  # a page's title is in its head, near the top
# What Spring (MaxUploadSizeExceededException: "Maximum upload size exceeded") and Tomcat
# under it (FileSizeLimitExceededException, SizeLimitExceededException) say of a body over
# the limit, when the answer is not a 413.
_TOO_LARGE = re.compile(
    r"maximum upload size exceeded|MaxUploadSizeExceeded|(?:File)?SizeLimitExceeded",
    re.IGNORECASE,
)
_SECRET_ROOM = 4096  # text kept past a cut while redacting, so a token across it is found


class OutcomeKind(enum.Enum):
    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"
    UNAUTHORIZED = "unauthorized"  # 401: renew the token once and try again


@dataclass(frozen=True, slots=True)
class UploadOutcome:
    kind: OutcomeKind
    reason: str  # the cause, e.g. `the server answered HTTP 503: busy`
    status: int | None = None
    answer: Any = None
    retry_after: float | None = None
    seconds: float = 0.0

    @property
    def retryable(self) -> bool:
        """True when the same upload may work later (a timeout, a 5xx, a proxy's page)."""
        return self.kind is OutcomeKind.RETRY


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
            # Never follow a redirect: the API never redirects, so one comes from something
            # else (a sign-in page, a proxy), and what answers where it points is not the API.
            response = session.post(
                url, data=encoder, headers=headers, timeout=timeouts, allow_redirects=False
            )
        except requests.Timeout as exc:
            return _network(exc, "timed out", started)
        except requests.exceptions.SSLError as exc:
            reason = untrusted_reason(exc, url)
            return UploadOutcome(OutcomeKind.RETRY, reason, seconds=time.monotonic() - started)
        except requests.RequestException as exc:
            return _network(exc, "could not be completed", started)
    outcome = classify(
        response.status_code, response.headers, response.text, request_bytes=encoder.len
    )
    return _with_seconds(outcome, time.monotonic() - started)


def _network(exc: Exception, what: str, started: float) -> UploadOutcome:
    reason = f"the upload {what} ({type(exc).__name__})"
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


def classify(
    status: int,
    headers: Any,
    text: str,
    now: datetime | None = None,
    request_bytes: int | None = None,
) -> UploadOutcome:
    """Turn one HTTP answer into an outcome; `request_bytes`, the size of the request it
    answers, is named if the server found it too large. The answer and the reason are
    redacted: a server that echoes the bearer token never gets it into a record."""
    headers = CaseInsensitiveDict(headers)  # requests' headers and a plain dict alike
    answer = parse_answer(text)
    message = _message(answer)
    if status == 200 and is_api_answer(answer):  # the API answers 200, and nothing else
        return _outcome(OutcomeKind.SENT, answer["message"], status, answer)
    if 200 <= status < 300:
        return _outcome(
            OutcomeKind.RETRY, _not_the_api(status, headers, text, answer), status, answer
        )
    if 300 <= status < 400:
        return _outcome(OutcomeKind.RETRY, _redirected(status, headers), status, answer)
    if status == 401:
        return _outcome(
            OutcomeKind.UNAUTHORIZED, "the server refused the access token", status, answer
        )
    if status == 413 or (status >= 400 and too_large(text)):
        reason = _too_large_reason(status, request_bytes)
        return _outcome(OutcomeKind.FAILED, reason, status, answer)
    if status in _RETRY_STATUSES or status >= 500:
        said = f"HTTP {status}: {message}" if message else what_answered(status, headers, text)
        after = retry_after_seconds(headers.get("Retry-After"), now or datetime.now(UTC))
        reason = f"the server answered {said}"
        return _outcome(OutcomeKind.RETRY, reason, status, answer, after)
    if message:
        reason = f"the server refused the upload with HTTP {status}: {message}"
    else:
        reason = f"the server refused the upload, answering {what_answered(status, headers, text)}"
    return _outcome(OutcomeKind.FAILED, reason, status, answer)


def too_large(text: str) -> bool:
    """True when an answer's body says the upload was over the server's size limit: Spring's
    `MaxUploadSizeExceededException` (or Tomcat's size-limit exception under it), which some
    deployments answer as 400 or 500 with its message, not 413."""
    return _TOO_LARGE.search(text[:_TITLE_SEARCH_CHARS]) is not None


def _too_large_reason(status: int, request_bytes: int | None) -> str:
    of = f" of {request_bytes:,} bytes" if request_bytes is not None else ""
    return (
        f"the server refused the upload{of} as too large (HTTP {status}, maximum upload "
        "size exceeded): set max_upload_bytes for the group below the server's limit (Spring "
        "Boot's default is 1 MB a file and 10 MB a request), and dropd cuts larger batches "
        "into several uploads; then `dropd retry` the batch"
    )


def is_api_answer(answer: Any) -> bool:
    """True for the API's own answer: a JSON object with a string `message`."""
    return isinstance(answer, dict) and isinstance(answer.get("message"), str)


def _outcome(
    kind: OutcomeKind, reason: str, status: int, answer: Any, after: float | None = None
) -> UploadOutcome:
    # Titles, Locations and messages come from the server: a token in them is blanked.
    return UploadOutcome(kind, REDACTOR.redact_text(reason), status, answer, after)


def _not_the_api(status: int, headers: CaseInsensitiveDict[str], text: str, answer: Any) -> str:
    what = what_answered(status, headers, text)
    if isinstance(answer, dict | list):
        who = "something other than the API answered; check base_url"
    else:
        who = "a proxy, captive portal or sign-in page answered instead of the API"
    return f"the upload was answered {what}, not the API's JSON answer: {who}"


def _redirected(status: int, headers: CaseInsensitiveDict[str]) -> str:
    what = redirect_answered(status, headers, "the API's JSON answer")
    return f"the upload was answered {what} (the API never redirects); check base_url"


def redirect_answered(status: int, headers: Any, instead_of: str) -> str:
    """A 3xx in words: where it pointed (never followed), or that it pointed nowhere and so
    is not `instead_of`."""
    location = str(CaseInsensitiveDict(headers).get("Location") or "").strip()
    if location:
        return f"HTTP {status}, a redirect to {quoted(location)}, which dropd never follows"
    return f"HTTP {status} with no Location header, not {instead_of}"


def what_answered(status: int, headers: Any, text: str) -> str:
    """An answer in words, for a reason: its status, its content type, and the page's title
    (or else the body, quoted), e.g. `HTTP 200 with text/html (page title "Sign in")`."""
    content_type = str(CaseInsensitiveDict(headers).get("Content-Type") or "")
    media = content_type.split(";", 1)[0].strip()[:100] or "no content type"
    if not text.strip():
        detail = "empty body"
    elif title := page_title(text):
        detail = f"page title {quoted(title)}"
    else:
        detail = f"body {quoted(text)}"
    return f"HTTP {status} with {media} ({detail})"


def page_title(text: str) -> str:
    """The `<title>` of an HTML page, unescaped, on one line; "" where there is none."""
    match = _TITLE.search(text[:_TITLE_SEARCH_CHARS])
    return " ".join(html.unescape(match.group(1)).split()) if match else ""


def quoted(text: str, limit: int = QUOTE_LIMIT) -> str:
    """`text` redacted, on one line and cut to about `limit` characters, in double quotes."""
    flat = " ".join(_redacted_prefix(text, limit * 4).split())
    if len(flat) > limit:
        flat = flat[: limit - 3] + "..."
    return json.dumps(flat, ensure_ascii=False)


def parse_answer(text: str) -> Any:
    """The server's answer as JSON, or its text cut to a sane length; redacted either way
    (text before it is cut, so no part of a token is left at the cut)."""
    try:
        return REDACTOR.redact(json.loads(text))
    except ValueError:
        return _redacted_prefix(text, ANSWER_TEXT_LIMIT)


def _redacted_prefix(text: str, limit: int) -> str:
    # A secret that begins past limit + _SECRET_ROOM would be cut away whole anyway.
    return REDACTOR.redact_text(text[: limit + _SECRET_ROOM])[:limit]


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
