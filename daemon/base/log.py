"""structlog set-up: one JSON object a line on stdout (or console lines), secrets redacted."""

from __future__ import annotations

import enum
import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog


class LogFormat(enum.Enum):
    """How log lines are written: one JSON object per line, or a console line for people."""

    JSON = "json"
    CONSOLE = "console"


class LogLevel(enum.Enum):
    """The least severe log lines written: `warning` writes warnings and errors only."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def number(self) -> int:
        """The level as the logging module counts it (`logging.WARNING`)."""
        return logging.getLevelNamesMapping()[self.name]


REDACTED = "[redacted]"

# Field names whose values are never logged, whatever they hold.
_SECRET_KEYS = re.compile(r"(secret|token|password|authorization|assertion)", re.IGNORECASE)
# Values that look like credentials wherever they appear inside a string.
_SECRET_PATTERNS = (
    re.compile(r"(?i)(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"),
    re.compile(
        r"(?i)(access_token|client_secret|refresh_token)([\"']?\s*[:=]\s*[\"']?)[^\s\"'&,}]+"
    ),
)
# Keys we log on purpose although their names match _SECRET_KEYS.
_ALLOWED_KEYS = frozenset({"token_url", "token_expires_in", "token_source"})


class SecretRedactor:
    """A structlog processor that blanks known secrets and anything shaped like one."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = {s for s in secrets if len(s) >= 4}

    def add(self, secret: str) -> None:
        """Remember a secret value (a client secret, an access token) to blank out."""
        if len(secret) >= 4:
            self._secrets.add(secret)

    def redact_text(self, text: str) -> str:
        """Return `text` with every known secret and credential-shaped value blanked."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        for pattern in _SECRET_PATTERNS:
            text = pattern.sub(lambda m: m.group(1) + _tail(m) + REDACTED, text)
        return text

    def __call__(
        self, _logger: Any, _name: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key, value in list(event.items()):
            if _SECRET_KEYS.search(key) and key not in _ALLOWED_KEYS:
                event[key] = REDACTED
            else:
                event[key] = self.redact(value)
        return event

    def redact(self, value: Any) -> Any:
        """Return a copy of `value` (text, or JSON-shaped dicts and lists) with every known
        secret and credential-shaped text blanked, and the values of secret-named keys too."""
        if isinstance(value, str):
            return self.redact_text(value)
        if isinstance(value, dict):
            return {
                k: (
                    REDACTED
                    if isinstance(k, str) and _SECRET_KEYS.search(k) and k not in _ALLOWED_KEYS
                    else self.redact(v)
                )
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.redact(v) for v in value]
        return value


def _tail(match: re.Match[str]) -> str:
    # Keep the separator of `key=value` shapes; `Bearer xyz` keeps one space.
    return match.group(2) if match.lastindex and match.lastindex >= 2 else " "


# One for the whole process, on purpose: every log line (any thread, any library's logger)
# and every record passes through it, so a secret learned anywhere is blanked everywhere.
REDACTOR = SecretRedactor()


def configure(
    log_format: LogFormat = LogFormat.JSON, stream: TextIO | None = None, level: int = logging.INFO
) -> None:
    """Send structlog and stdlib logging to `stream` (stdout) as JSON or console lines, from
    `level` up. Called again (a reload), it replaces the set-up: loggers already made follow."""
    out = stream or sys.stdout
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if log_format is LogFormat.JSON:
        renderer = structlog.processors.JSONRenderer()
        # Tracebacks become data first, so the redactor sees their messages and frames too.
        tail: list[Any] = [structlog.processors.dict_tracebacks, REDACTOR]
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
        tail = [structlog.processors.format_exc_info, REDACTOR]
    structlog.configure(
        processors=[*shared, *tail, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *tail,
                renderer,
            ],
        )
    )
    # The handler filters too: a library logger set to its own level (below) hands its lines
    # to the root's handler without the root's level being asked.
    handler.setLevel(level)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # oauthlib logs the Basic header and the token at DEBUG (requests-oauthlib#536).
    for noisy in ("oauthlib", "requests_oauthlib", "urllib3", "watchdog"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, level))
