"""Each table of dropd's TOML read into its settings: [daemon], [environments.NAME],
[groups.NAME] and [notify], every problem noted as `key.path: why`.

`load.load_config` puts them together; `toml` reads the values of any table, and each
number's range and each default come from the settings' fields (`keys`).
"""

from __future__ import annotations

import codecs
import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from daemon.config.keys import default_of, key_of
from daemon.config.model import (
    DaemonSettings,
    DoneMarkers,
    Environment,
    Group,
    NotifyEvent,
    NotifySettings,
    NotifyUrls,
    SecretKind,
    SecretSource,
    TokenAuth,
    UrlsKind,
    Validation,
)
from daemon.config.notify_urls import apprise_problem, password_of, scheme_of
from daemon.config.toml import Bounds, Table, figure, join_key, quote, subtable, url_problem

_T = TypeVar("_T")
_GROUP_NAME = re.compile(r"[A-Za-z0-9._-]+")
_SECONDS_HINT = "give seconds as a number such as 10 or 0.5"
_PERCENT_HINT = "give a percentage such as 50, or 0 to turn the guard off"
_SECRET_KEYS = "client_secret_file, client_secret_env or client_secret_credential"
_SECRET_RULES = {  # how a name must look, and the message when it does not
    SecretKind.ENV: (
        re.compile(r"[A-Za-z_][A-Za-z0-9_]*"),
        "is not an environment variable name; use letters, digits and _, not starting with a digit",
    ),
    SecretKind.CREDENTIAL: (
        re.compile(r"(?!\.\.?$)[^/\x00]+"),
        "is not a credential name; give the NAME of LoadCredential=NAME:PATH, without any /",
    ),
}
_SECRET_EXAMPLES = {
    SecretKind.FILE: '"/etc/dropd/test.secret"',
    SecretKind.ENV: '"DROPD_TEST_SECRET"',
    SecretKind.CREDENTIAL: '"dropd-test"',
}
# In the order they are read, which is the order an unknown key's message lists them in.
_DAEMON_SECONDS = (
    "settle_seconds",
    "quiet_seconds",
    "max_wait_seconds",
    "poll_seconds",
    "retry_initial_seconds",
    "retry_max_seconds",
    "give_up_after_seconds",
    "connect_timeout_seconds",
    "read_timeout_seconds",
)


def read_daemon(raw: object, base: Path, problems: list[str]) -> DaemonSettings:
    """The [daemon] table's settings; the defaults where it or a key is absent."""
    table = subtable({} if raw is None else raw, "daemon", problems)
    default = DaemonSettings()
    if table is None:
        return default
    state_dir = table.path("state_dir", base, example='"/var/lib/dropd"') or default.state_dir
    seconds: dict[str, Any] = {
        key: table.number(key, getattr(default, key), _bounds(DaemonSettings, key), _SECONDS_HINT)
        for key in _DAEMON_SECONDS
    }
    settings = DaemonSettings(
        state_dir=state_dir,
        log_format=table.choice("log_format", default.log_format),
        log_level=table.choice("log_level", default.log_level),
        metrics_port=_whole(table, DaemonSettings, "metrics_port", example="9100"),
        sent_retention_days=_whole(table, DaemonSettings, "sent_retention_days", example="30"),
    )
    _check_retry_order(table, seconds["retry_initial_seconds"], seconds["retry_max_seconds"])
    table.reject_unknown()
    return dataclasses.replace(settings, **seconds)


def _check_retry_order(table: Table, initial: float, most: float) -> None:
    if initial > most and not table.bad & {"retry_initial_seconds", "retry_max_seconds"}:
        why = (
            f"is more than retry_max_seconds ({figure(most)}); lower it or raise retry_max_seconds"
        )
        table.problem("retry_initial_seconds", f"{figure(initial)} {why}")


def read_environment(name: str, table: Table, base: Path) -> Environment:
    """The [environments.NAME] table's settings."""
    token_url = _url(table, "token_url", '"https://apps-test.iu.edu/uaa-stg/oauth/token"')
    base_url = _url(
        table, "base_url", '"https://lms-lti-3rdpartyprovisioning-stg.apps-test.iu.edu"'
    )
    environment = Environment(
        name=name,
        token_url=token_url,
        base_url=base_url.rstrip("/"),
        client_id=table.text("client_id", example='"my-unit"'),
        secret=_secret(table, base),
        ca_bundle=table.path("ca_bundle", base, example='"/etc/ssl/certs/campus.pem"'),
        token_auth=table.choice("token_auth", _default(Environment, "token_auth", TokenAuth)),
    )
    table.reject_unknown(handled={"client_secret"})
    return environment


def _url(table: Table, key: str, example: str) -> str:
    url = table.text(key, example=example)
    why = url_problem(url) if url else None
    if why is not None:
        table.problem(key, why)
    return url


def _secret(table: Table, base: Path) -> SecretSource:
    """Where the environment's client secret is to be read from: exactly one source."""
    if "client_secret" in table.raw:
        # The value is never quoted: it is likely the real secret.
        table.problem(
            "client_secret", f"secrets never sit in the TOML; remove it and use {_SECRET_KEYS}"
        )
    given = [kind for kind in SecretKind if table.get(kind.value) is not None]
    if len(given) == 1:
        return SecretSource(given[0], _secret_value(table, given[0], base))
    if given:
        names = [kind.value for kind in given]
        listed = f"{', '.join(names[:-1])} and {names[-1]}"
        table.problem(None, f"{listed} are given; keep exactly one of them")
    elif "client_secret" not in table.raw:
        table.problem(None, f"no client secret source; give one of {_SECRET_KEYS}")
    return SecretSource(SecretKind.FILE, "")


def _secret_value(table: Table, kind: SecretKind, base: Path) -> str:
    example = _SECRET_EXAMPLES[kind]
    if kind is SecretKind.FILE:
        return str(table.path(kind.value, base, example=example, required=True) or "")
    value = table.text(kind.value, example=example)
    pattern, why = _SECRET_RULES[kind]
    if value and not pattern.fullmatch(value):
        table.problem(kind.value, f"{quote(value)} {why}")
    return value


def read_group(key: str, table: Table, base: Path, environments: Sequence[str]) -> Group:
    """The [groups.KEY] table's settings; `environments` are the names defined."""
    group = Group(
        key=key,
        environment=_environment_name(table, environments),
        folder=table.path("folder", base, example='"/srv/drop/music"', required=True) or Path(),
        group_name=_group_name(table, key),
        friendly_name=table.text("friendly_name", example='"School of Music"', default=key),
        done_markers=table.choice("done_markers", _default(Group, "done_markers", DoneMarkers)),
        validation=table.choice("validation", _default(Group, "validation", Validation)),
        max_upload_bytes=_whole(table, Group, "max_upload_bytes", example="1000000"),
        encoding=_encoding(table),
        max_deleted_percent=table.number(
            "max_deleted_percent",
            _default(Group, "max_deleted_percent", float),
            _bounds(Group, "max_deleted_percent"),
            _PERCENT_HINT,
        ),
        min_rows_for_guard=_whole(table, Group, "min_rows_for_guard", example="100"),
    )
    table.reject_unknown()
    return group


def read_notify(raw: object, base: Path, problems: list[str]) -> NotifySettings | None:
    """The [notify] table's settings; None when there is no such table."""
    if raw is None:
        return None
    table = subtable(raw, "notify", problems)
    if table is None:
        return None
    given = [kind for kind in UrlsKind if table.get(kind.value) is not None]
    on = _notify_events(table)
    table.reject_unknown()
    if len(given) > 1:
        names = [kind.value for kind in given]
        listed = f"{', '.join(names[:-1])} and {names[-1]}"
        table.problem(None, f"{listed} are given; keep exactly one of them")
    elif not given:
        table.problem(None, f"no URL; give one of {', '.join(k.value for k in UrlsKind)}")
    else:
        return NotifySettings(_notify_urls(table, given[0], base), on)
    return None


def _notify_urls(table: Table, kind: UrlsKind, base: Path) -> NotifyUrls:
    if kind is UrlsKind.FILE:
        path = table.path(kind.value, base, example='"/etc/dropd/notify.urls"', required=True)
        return NotifyUrls(kind, value=str(path or ""))
    if kind is UrlsKind.CREDENTIAL:
        name = table.text(kind.value, example='"notify.urls"')
        pattern, why = _SECRET_RULES[SecretKind.CREDENTIAL]
        if name and not pattern.fullmatch(name):
            table.problem(kind.value, f"{quote(name)} {why}")
        return NotifyUrls(kind, value=name)
    urls = _list_of_text(table, kind.value, example='["mailto://relay.example.edu?to=…"]')
    if not urls and kind.value not in table.bad:
        why = "is empty; give at least one apprise URL, or remove [notify]"
        table.problem(kind.value, why)
    for index, url in enumerate(urls):
        # Never the URL itself in a message: it may hold a password.
        problem = apprise_problem(url)
        if password_of(url) is not None:
            problem = (
                f"a {scheme_of(url)}:// URL with a password; secrets never sit in the TOML: "
                "move it to urls_file or urls_credential"
            )
        if problem is not None:
            _item_problem(table, kind.value, index, problem)
    return NotifyUrls(kind, urls=tuple(urls))


def _notify_events(table: Table) -> tuple[NotifyEvent, ...]:
    default = _default(NotifySettings, "on", tuple)
    if table.get("on") is None:
        return default
    names = _list_of_text(table, "on", example='["batch_failed", "group_error"]')
    known = {event.value: event for event in NotifyEvent}
    allowed = ", ".join(quote(event.value) for event in NotifyEvent)
    found = []
    for index, name in enumerate(names):
        if name in known:
            found.append(known[name])
        else:
            why = f"{quote(name)} is not an event dropd tells of; use some of: {allowed}"
            _item_problem(table, "on", index, why)
    return tuple(dict.fromkeys(found))


def _list_of_text(table: Table, key: str, *, example: str) -> list[str]:
    """The list of strings at `key`; [] and a problem if it is not one."""
    value = table.get(key)
    if not isinstance(value, list):
        table.problem(key, f"{quote(value)} is not a list; write it as {key} = {example}")
        return []
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            # Not quoted: an item of urls may be a URL with its password.
            shown = "is empty" if isinstance(item, str) else f"is {quote(item)}, not a string"
            _item_problem(table, key, index, f"{shown}; write each in quotes")
    return [item for item in value if isinstance(item, str) and item.strip()]


def _item_problem(table: Table, key: str, index: int, why: str) -> None:
    table.bad.add(key)
    table.problems.append(f"{join_key(table.where, key)}[{index}]: {why}")


def _encoding(table: Table) -> str:
    """The group's `encoding`: a name Python's codecs know, for text (not base64 or rot13)."""
    default = _default(Group, "encoding", str)
    name = table.text("encoding", example='"cp1252"', default=default)
    if "encoding" in table.bad:
        return default
    try:
        text = codecs.lookup(name)._is_text_encoding
    except LookupError:
        why = 'is not an encoding Python knows; use e.g. "utf-8" or "cp1252"'
    else:
        if text:
            return name
        why = 'is not a text encoding; use e.g. "utf-8" or "cp1252"'
    table.problem("encoding", f"{quote(name)} {why}")
    return default


def _environment_name(table: Table, defined: Sequence[str]) -> str:
    if not defined and table.get("environment") is None:
        # Nothing to name yet: the environment's table comes first.
        table.problem(
            "environment",
            "missing, and the file has no environment to name: add an [environments.NAME] "
            "table (token_url, base_url, client_id and a client secret; see "
            'config/dropd.example.toml), then environment = "NAME" here',
        )
        return ""
    name = table.text("environment", example=quote(defined[0] if defined else "test"))
    if name and name not in defined:
        hint = f"add [{join_key('environments', name)}]"
        if defined:
            hint += " or use one of: " + ", ".join(defined)
        table.problem("environment", f"{quote(name)} is not defined under [environments]; {hint}")
    return name


def _group_name(table: Table, key: str) -> str:
    name = table.text("group_name", example=quote(key), default=key)
    if "group_name" in table.bad or (_GROUP_NAME.fullmatch(name) and name not in (".", "..")):
        return name
    origin = (
        "" if "group_name" in table.raw else " (the table's key, used when group_name is not set)"
    )
    why = 'cannot go into the upload URL; use letters, digits, ".", "_" and "-" (not "." or "..")'
    table.problem("group_name", f"{quote(name)}{origin} {why}")
    return name


def _whole(table: Table, settings: type, key: str, *, example: str) -> int:
    """The whole number at `key`, within the range and with the default of its field."""
    default = _default(settings, key, int)
    return table.whole(key, default, _bounds(settings, key), example=example)


def _bounds(settings: type, key: str) -> Bounds:
    return key_of(settings, key).bounds


def _default(settings: type, key: str, kind: type[_T]) -> _T:
    default = default_of(settings, key)
    if not isinstance(default, kind):
        raise TypeError(f"{settings.__name__}.{key} defaults to {default!r}, not a {kind}")
    return default
