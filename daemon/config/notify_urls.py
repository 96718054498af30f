"""The apprise URLs of [notify]: each checked by apprise itself, read from the TOML, a file or
a systemd credential, and never shown, since a URL may hold a password.

apprise tells why it refuses a URL (or fails to send) only through its stdlib logger
`apprise`, whose lines quote parts of the URL. That logger is cut off from dropd's log here
once and for all; while a thread asks it something, its lines are kept for that thread,
blanked of every part of the URL, and given back as the reason.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import stat
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote, urlsplit

from daemon.base.errors import ConfigError
from daemon.base.log import REDACTED
from daemon.config.model import NotifySettings, UrlsKind

if TYPE_CHECKING:  # imported where used: every command reads the config, few need apprise
    import apprise

__all__ = [
    "UrlList",
    "apprise_problem",
    "apprise_reason",
    "blank_url",
    "password_of",
    "read_urls",
    "scheme_of",
    "url_lines",
    "with_sender",
]

_KEY = {kind: f"notify.{kind.value}" for kind in UrlsKind}
# apprise's own masking ("p...w") still shows a secret's first and last characters.
_MASKED = re.compile(r"[^\s/:@?&=,'\"()<>]*\.\.\.[^\s/:@?&=,'\"()<>]*")
_SHORTEST_PART = 3  # shorter parts of a URL (a port, "to") are left in apprise's sentences


@dataclass(frozen=True, slots=True)
class UrlList:
    """The URLs [notify] names, as read, and a warning about where they were read from."""

    urls: tuple[str, ...]
    where: tuple[str, ...]  # each URL's place, for messages: notify.urls[0], FILE line 3
    open_to_others: str = ""  # the file's mode when others may read it, such as "0o644"
    path: Path | None = None  # the file they came from, if any


def scheme_of(url: str) -> str:
    """The URL's scheme ("mailto"), the one part of it dropd ever shows."""
    scheme, sep, _ = url.partition("://")
    return scheme.strip().lower() if sep and scheme.strip().isalnum() else "unknown"


def password_of(url: str) -> str | None:
    """The password before the host of `url` (`user:password@host`), if it has one."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return None if password is None else unquote(password)


def with_sender(url: str, host: str | None = None) -> str:
    """`url`, and for an e-mail URL that names no sender (`mailto://relay?to=...`), which
    apprise refuses, `from=dropd@HOST`: this machine's full name, else the recipient's domain."""
    try:
        split = urlsplit(url)
    except ValueError:
        return url
    if split.scheme.lower() not in ("mailto", "mailtos") or split.username:
        return url
    query = parse_qsl(split.query)
    if any(key.lower() == "from" for key, _ in query):
        return url
    host = host if host is not None else socket.getfqdn()
    if "." not in host.strip("."):
        recipient = next((value for key, value in query if key.lower() == "to"), "")
        host = recipient.rpartition("@")[2] or "localhost.localdomain"
    return f"{url}{'&' if split.query else '?'}from=dropd@{host}"


def apprise_problem(url: str) -> str | None:
    """Why apprise cannot use `url` (naming its scheme, never the URL), or None."""
    import apprise
    from apprise.apprise import N_MGR as APPRISE_SERVICES

    with apprise_reason(url) as said:
        plugin = apprise.Apprise.instantiate(with_sender(url), asset=new_asset())
    if plugin is not None:
        return None
    scheme = scheme_of(url)
    if scheme == "unknown":
        return "is not an apprise URL; write it as SCHEME://..., such as mailto://..."
    if scheme not in APPRISE_SERVICES:
        return f"{scheme}:// is not a scheme apprise knows; see apprise's list of services"
    why = f" ({said[0]})" if said else ""
    return f"a {scheme}:// URL apprise cannot use{why}; check it against its {scheme}:// syntax"


def url_lines(text: str) -> list[tuple[int, str]]:
    """The URLs of a file, with their line numbers: blank lines and `#` comments left out."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            found.append((number, stripped))
    return found


def read_urls(settings: NotifySettings, environ: Mapping[str, str] = os.environ) -> UrlList:
    """[notify]'s URLs, from the TOML, its file or its credential, each checked by apprise.

    Raises ConfigError, one problem a URL or one for the file, none of them quoting a URL.
    """
    source = settings.urls
    if source.kind is UrlsKind.LIST:
        where = tuple(f"notify.urls[{index}]" for index in range(len(source.urls)))
        return UrlList(source.urls, where)
    key = _KEY[source.kind]
    path = Path(source.value)
    if source.kind is UrlsKind.CREDENTIAL:
        creds = environ.get("CREDENTIALS_DIRECTORY")
        if not creds:
            why = "needs $CREDENTIALS_DIRECTORY; give it with LoadCredential="
            raise ConfigError([f"{key}: {source.value!r} {why}"])
        path = Path(creds) / source.value
    try:
        info = path.stat()
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{key}: cannot read {path}: {exc.strerror or exc}"]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{key}: {path} is not UTF-8 text; save it as UTF-8"]) from exc
    lines = url_lines(text)
    problems = [
        f"{key}: {path} line {number}: {problem}"
        for number, url in lines
        if (problem := apprise_problem(url)) is not None
    ]
    if not lines:
        problems.append(f"{key}: {path} holds no URL; write one apprise URL a line")
    if problems:
        raise ConfigError(problems)
    others = info.st_mode & (stat.S_IRWXG | stat.S_IRWXO)
    return UrlList(
        tuple(url for _, url in lines),
        tuple(f"{path} line {number}" for number, _ in lines),
        open_to_others=oct(info.st_mode & 0o777) if others else "",
        path=path,
    )


def new_asset() -> apprise.AppriseAsset:
    """How dropd's messages present themselves; apprise keeps nothing on disk for dropd."""
    import apprise

    return apprise.AppriseAsset(app_id="dropd", app_desc="dropd", storage_mode="memory")


def blank_url(text: str, url: str) -> str:
    """`text` with the URL and each of its parts (user, password, host, path, query values)
    blanked, and apprise's partly masked values too."""
    parts = {url, unquote(url)}
    try:
        split = urlsplit(url)
        parts.update([split.username or "", split.password or "", split.hostname or ""])
        parts.update(p for segment in split.path.split("/") for p in (segment, unquote(segment)))
        parts.update(value for _, value in parse_qsl(split.query))
    except ValueError:
        parts.update(re.split(r"[/:@?&=]+", url))
    for part in sorted(parts, key=len, reverse=True):
        if len(part) >= _SHORTEST_PART:
            text = text.replace(part, REDACTED)
    return _MASKED.sub(REDACTED, text)


class _Keeper(logging.Handler):
    """apprise's log lines: kept for the thread asking it something, else dropped."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.local = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        kept: list[str] | None = getattr(self.local, "kept", None)
        if kept is not None and record.levelno >= logging.WARNING:
            try:
                kept.append(record.getMessage())
            except (TypeError, ValueError):  # a message apprise could not format
                kept.append(str(record.msg))


_KEEPER = _Keeper()
_CUT_OFF = threading.Lock()


def _cut_off_apprise() -> None:
    # Once per process: apprise's lines go to the keeper only, never to dropd's log.
    with _CUT_OFF:
        logger = logging.getLogger("apprise")
        if _KEEPER not in logger.handlers:
            logger.handlers[:] = [_KEEPER]
            logger.propagate = False
            logger.setLevel(logging.WARNING)


@contextmanager
def apprise_reason(url: str) -> Iterator[list[str]]:
    """Around a call of apprise's about `url`: the warnings and errors it logged meanwhile,
    in this thread, blanked of the URL's parts (filled in when the block ends)."""
    _cut_off_apprise()
    kept: list[str] = []
    _KEEPER.local.kept = kept
    said: list[str] = []
    try:
        yield said
    finally:
        _KEEPER.local.kept = None
        said.extend(dict.fromkeys(blank_url(line, url) for line in kept))
