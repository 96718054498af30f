"""Reading and checking dropd's TOML into frozen settings; every problem as `key.path: why`."""

from __future__ import annotations

import dataclasses
import enum
import os
import re
import sys
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon.errors import ConfigError
from daemon.toml_checks import (
    Bounds,
    Table,
    check_path,
    figure,
    join_key,
    quote,
    sections,
    subtable,
    url_problem,
)


class LogFormat(enum.Enum):
    JSON = "json"
    CONSOLE = "console"


class DoneMarkers(enum.Enum):
    AUTO = "auto"
    REQUIRED = "required"
    OFF = "off"


class Validation(enum.Enum):
    STRICT = "strict"
    OFF = "off"


class TokenAuth(enum.Enum):
    """How the client id and secret reach the token endpoint."""

    BASIC = "basic"  # HTTP Basic header (the OAuth2 default)
    BODY = "body"  # client_id and client_secret in the form body


class SecretKind(enum.Enum):
    FILE = "client_secret_file"
    ENV = "client_secret_env"
    CREDENTIAL = "client_secret_credential"


@dataclass(frozen=True, slots=True)
class SecretSource:
    """Where an environment's client secret lives; never the secret itself."""

    kind: SecretKind
    value: str  # a path, an environment variable name, or a credential name


@dataclass(frozen=True, slots=True)
class DaemonSettings:
    state_dir: Path = Path("/var/lib/dropd")
    settle_seconds: float = 10.0
    quiet_seconds: float = 30.0
    max_wait_seconds: float = 300.0
    poll_seconds: float = 0.0
    log_format: LogFormat = LogFormat.JSON
    metrics_port: int = 0
    retry_initial_seconds: float = 5.0
    retry_max_seconds: float = 900.0
    give_up_after_seconds: float = 86400.0
    connect_timeout_seconds: float = 10.0
    read_timeout_seconds: float = 300.0
    sent_retention_days: int = 0


@dataclass(frozen=True, slots=True)
class Environment:
    name: str  # the key under [environments]
    token_url: str
    base_url: str  # without a trailing slash
    client_id: str
    secret: SecretSource
    ca_bundle: Path | None = None
    token_auth: TokenAuth = TokenAuth.BASIC


@dataclass(frozen=True, slots=True)
class Group:
    key: str  # the key under [groups]
    environment: str  # a key of Config.environments
    folder: Path  # absolute
    group_name: str  # the API's group; default: key
    friendly_name: str  # default: key
    done_markers: DoneMarkers = DoneMarkers.AUTO
    validation: Validation = Validation.STRICT
    max_upload_bytes: int = 0
    max_deleted_percent: float = 50.0
    min_rows_for_guard: int = 100


@dataclass(frozen=True, slots=True)
class Config:
    path: Path
    daemon: DaemonSettings = field(default_factory=DaemonSettings)
    environments: Mapping[str, Environment] = field(default_factory=dict)
    groups: Mapping[str, Group] = field(default_factory=dict)


def load_config(path: Path) -> Config:
    """Read and check the TOML at `path`; relative paths in it are taken from its folder.

    Raises ConfigError listing every problem if the file is missing, not TOML, or invalid.
    """
    path = Path(os.path.abspath(path))
    problems: list[str] = []
    top = Table(_read_toml(path), "", problems)
    daemon_raw, environments_raw, groups_raw = (top.get(k) for k in _TOP_KEYS)
    top.reject_unknown()
    daemon = _daemon(daemon_raw, path.parent, problems)
    environment_tables = sections(environments_raw, "environments", problems)
    environments = {
        name: _environment(name, table, path.parent) for name, table in environment_tables
    }
    defined = [name for name, _ in environment_tables]
    groups = {
        key: _group(key, table, path.parent, defined)
        for key, table in sections(groups_raw, "groups", problems)
    }
    _check_folders_apart(list(groups.values()), problems)
    if problems:
        raise ConfigError(problems)
    return Config(path=path, daemon=daemon, environments=environments, groups=groups)


def check_paths(config: Config) -> list[str]:
    """Problems with the files and folders `config` names, as `key.path: why`; [] when none.

    Secrets from environment variables and credentials are not checked: they only exist
    inside the service.
    """
    problems: list[str] = []
    for name, environment in config.environments.items():
        where = join_key("environments", name)
        if environment.ca_bundle is not None:
            check_path(f"{where}.ca_bundle", environment.ca_bundle, "any", problems)
        if environment.secret.kind is SecretKind.FILE:
            secret_file = Path(environment.secret.value)
            check_path(f"{where}.client_secret_file", secret_file, "file", problems)
    for key, group in config.groups.items():
        check_path(f"{join_key('groups', key)}.folder", group.folder, "folder", problems)
    return problems


def check_config_command(path: Path) -> int:
    """`dropd check-config`: 0 and one line on stdout, or 2 and every problem on stderr."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        return _report(exc.problems)
    problems = check_paths(config)
    if problems:
        return _report(problems)
    environments = _count(len(config.environments), "environment")
    print(f"{path}: ok ({environments}, {_count(len(config.groups), 'group')})")
    return 0


def _report(problems: list[str]) -> int:
    for problem in problems:
        print(problem, file=sys.stderr)
    return 2


_TOP_KEYS = ("daemon", "environments", "groups")
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
_ABOVE_ZERO = Bounds(above=True)
_DAEMON_SECONDS = {
    "settle_seconds": Bounds(),
    "quiet_seconds": _ABOVE_ZERO,
    "max_wait_seconds": _ABOVE_ZERO,
    "poll_seconds": Bounds(),
    "retry_initial_seconds": _ABOVE_ZERO,
    "retry_max_seconds": Bounds(),
    "give_up_after_seconds": Bounds(),
    "connect_timeout_seconds": _ABOVE_ZERO,
    "read_timeout_seconds": _ABOVE_ZERO,
}


def _read_toml(path: Path) -> dict[str, Any]:
    """The parsed TOML file. Raises ConfigError naming the file if it cannot be had."""
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except (FileNotFoundError, NotADirectoryError):
        why = "does not exist; create it (see config/dropd.example.toml) or fix the path"
    except IsADirectoryError:
        why = "is a folder; give the path of the TOML file"
    except OSError as exc:
        why = f"cannot be read ({exc.strerror}); check its permissions"
    except UnicodeDecodeError:
        why = "is not UTF-8 text; save it as UTF-8"
    except tomllib.TOMLDecodeError as exc:
        why = f"is not valid TOML: {exc}; fix the syntax there"
    raise ConfigError([f"{path}: {why}"])


def _daemon(raw: object, base: Path, problems: list[str]) -> DaemonSettings:
    table = subtable({} if raw is None else raw, "daemon", problems)
    default = DaemonSettings()
    if table is None:
        return default
    state_dir = table.path("state_dir", base, example='"/var/lib/dropd"') or default.state_dir
    seconds: dict[str, Any] = {
        key: table.number(key, getattr(default, key), bounds, _SECONDS_HINT)
        for key, bounds in _DAEMON_SECONDS.items()
    }
    settings = DaemonSettings(
        state_dir=state_dir,
        log_format=table.choice("log_format", default.log_format),
        metrics_port=table.whole("metrics_port", 0, Bounds(high=65535), example="9100"),
        sent_retention_days=table.whole("sent_retention_days", 0, Bounds(), example="30"),
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


def _environment(name: str, table: Table, base: Path) -> Environment:
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
        token_auth=table.choice("token_auth", TokenAuth.BASIC),
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


def _group(key: str, table: Table, base: Path, environments: Sequence[str]) -> Group:
    group = Group(
        key=key,
        environment=_environment_name(table, environments),
        folder=table.path("folder", base, example='"/srv/drop/music"', required=True) or Path(),
        group_name=_group_name(table, key),
        friendly_name=table.text("friendly_name", example='"School of Music"', default=key),
        done_markers=table.choice("done_markers", DoneMarkers.AUTO),
        validation=table.choice("validation", Validation.STRICT),
        max_upload_bytes=table.whole("max_upload_bytes", 0, Bounds(), example="1000000"),
        max_deleted_percent=table.number(
            "max_deleted_percent", 50.0, Bounds(high=100), _PERCENT_HINT
        ),
        min_rows_for_guard=table.whole("min_rows_for_guard", 100, Bounds(low=1), example="100"),
    )
    table.reject_unknown()
    return group


def _environment_name(table: Table, defined: Sequence[str]) -> str:
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


def _check_folders_apart(groups: Sequence[Group], problems: list[str]) -> None:
    """Two groups sharing a folder, or one inside the other, would take each other's files."""
    placed = [group for group in groups if group.folder.is_absolute()]
    for index, group in enumerate(placed):
        for other in placed[:index]:
            other_name = join_key("groups", other.key)
            if group.folder == other.folder:
                why = f"is also the folder of {other_name}; give each group a folder of its own"
            elif group.folder.is_relative_to(other.folder):
                why = f"is inside {other_name}'s folder {other.folder}; move it beside, not inside"
            elif other.folder.is_relative_to(group.folder):
                why = f"holds {other_name}'s folder {other.folder}; move that beside, not inside"
            else:
                continue
            problems.append(f"{join_key('groups', group.key)}.folder: {group.folder} {why}")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"
