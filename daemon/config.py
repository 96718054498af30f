"""Reading and checking dropd's TOML into frozen settings; every problem as `key.path: why`."""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import json
import math
import os
import re
import stat
import sys
import tomllib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from daemon.errors import ConfigError


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
    top = _Table(_read_toml(path), "", problems)
    daemon_raw, environments_raw, groups_raw = (top.get(k) for k in _TOP_KEYS)
    top.reject_unknown()
    daemon = _daemon(daemon_raw, path.parent, problems)
    environment_tables = _sections(environments_raw, "environments", problems)
    environments = {
        name: _environment(name, table, path.parent) for name, table in environment_tables
    }
    defined = [name for name, _ in environment_tables]
    groups = {
        key: _group(key, table, path.parent, defined)
        for key, table in _sections(groups_raw, "groups", problems)
    }
    _check_folders_apart(list(groups.values()), problems)
    if problems:
        raise ConfigError(problems)
    return Config(path=path, daemon=daemon, environments=environments, groups=groups)


def environment_of(config: Config, group: Group) -> Environment:
    """The environment `group` uploads to.

    Raises KeyError if `config` did not come from load_config, which makes sure it exists.
    """
    return config.environments[group.environment]


def check_paths(config: Config) -> list[str]:
    """Problems with the files and folders `config` names, as `key.path: why`; [] when none.

    Secrets from environment variables and credentials are not checked: they only exist
    inside the service.
    """
    problems: list[str] = []
    for name, environment in config.environments.items():
        where = _join("environments", name)
        if environment.ca_bundle is not None:
            _check_path(f"{where}.ca_bundle", environment.ca_bundle, "any", problems)
        if environment.secret.kind is SecretKind.FILE:
            secret_file = Path(environment.secret.value)
            _check_path(f"{where}.client_secret_file", secret_file, "file", problems)
    for key, group in config.groups.items():
        _check_path(f"{_join('groups', key)}.folder", group.folder, "folder", problems)
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
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
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


@dataclass(frozen=True, slots=True)
class _Bounds:
    """The range a number must fall in."""

    low: float = 0
    high: float = math.inf
    above: bool = False  # the number must be greater than `low`, not equal to it

    def describe(self) -> str:
        if self.high < math.inf:
            return f"between {self.low:g} and {self.high:g}"
        return f"above {self.low:g}" if self.above else f"of {self.low:g} or more"

    def misfit(self, value: float) -> str | None:
        """Whether `value` is too "small" or too "large"; None when it fits."""
        if value < self.low or (self.above and value == self.low):
            return "small"
        return "large" if value > self.high else None


_ABOVE_ZERO = _Bounds(above=True)
_DAEMON_SECONDS = {
    "settle_seconds": _Bounds(),
    "quiet_seconds": _ABOVE_ZERO,
    "max_wait_seconds": _ABOVE_ZERO,
    "poll_seconds": _Bounds(),
    "retry_initial_seconds": _ABOVE_ZERO,
    "retry_max_seconds": _Bounds(),
    "give_up_after_seconds": _Bounds(),
    "connect_timeout_seconds": _ABOVE_ZERO,
    "read_timeout_seconds": _ABOVE_ZERO,
}
_E = TypeVar("_E", bound=enum.Enum)
_Want = Literal["folder", "file", "any"]  # "any": a CA bundle may be a file or a c_rehash folder


class _Table:
    """One TOML table being read: its key path, the keys asked for, the problems found."""

    def __init__(self, raw: Mapping[str, Any], where: str, problems: list[str]) -> None:
        self.raw = raw
        self.where = where
        self.problems = problems
        self.known: list[str] = []
        self.bad: set[str] = set()

    def problem(self, key: str | None, why: str) -> None:
        """Note a problem with `key`, or with the table itself when `key` is None."""
        if key is not None:
            self.bad.add(key)
        self.problems.append(f"{self.where if key is None else _join(self.where, key)}: {why}")

    def get(self, key: str) -> object:
        """The value at `key`, None when absent (TOML has no null); `key` becomes known."""
        if key not in self.known:
            self.known.append(key)
        return self.raw.get(key)

    def reject_unknown(self, handled: Collection[str] = ()) -> None:
        known = ", ".join(self.known)
        for key in self.raw:
            if key not in self.known and key not in handled:
                self.problem(key, f"unknown key; remove it (known keys: {known})")

    def text(self, key: str, *, example: str, default: str | None = None) -> str:
        """The string at `key`, else `default`; "" and a problem if it is wrong or missing."""
        value = self.get(key)
        if value is None:
            if default is None:
                self.problem(key, f"missing; add {key} = {example}")
            return default or ""
        if not isinstance(value, str):
            why = f"is not a string; write it in quotes, such as {key} = {example}"
        elif not value.strip():
            why = f"is empty; give a value, such as {key} = {example}"
        else:
            return value
        self.problem(key, f"{_quote(value)} {why}")
        return ""

    def path(self, key: str, base: Path, *, example: str, required: bool = False) -> Path | None:
        """The path at `key`, made absolute against `base`; None if absent or wrong."""
        value = self.text(key, example=example, default=None if required else "")
        if value.startswith("~") or "\x00" in value:
            trouble = "holds a NUL" if "\x00" in value else "starts with ~, which is not expanded"
            self.problem(key, f"{_quote(value)} {trouble}; give the full path, such as {example}")
            return None
        # normpath, not resolve(): load_config must not look at the folders themselves.
        return Path(os.path.normpath(base / value)) if value else None

    def choice(self, key: str, default: _E) -> _E:
        value = self.get(key)
        for member in type(default):
            if value == member.value:
                return member
        if value is not None:
            allowed = ", ".join(_quote(member.value) for member in type(default))
            self.problem(key, f"{_quote(value)} is not a choice; use one of: {allowed}")
        return default

    def number(self, key: str, default: float, bounds: _Bounds, hint: str) -> float:
        value = self.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.problem(key, _not_a_number(value, "a number", hint))
        elif not math.isfinite(value):
            self.problem(key, f"{_quote(value)} is not a finite number; {hint}")
        elif self._fits(key, value, bounds, "a number"):
            return float(value)
        return default

    def whole(self, key: str, default: int, bounds: _Bounds, example: str) -> int:
        value = self.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            hint = f"give a whole number such as {example}"
            self.problem(key, _not_a_number(value, "a whole number", hint))
        elif self._fits(key, value, bounds, "a whole number"):
            return value
        return default

    def _fits(self, key: str, value: float, bounds: _Bounds, noun: str) -> bool:
        misfit = bounds.misfit(value)
        if misfit is not None:
            self.problem(key, f"{_quote(value)} is too {misfit}; give {noun} {bounds.describe()}")
        return misfit is None


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


def _sections(raw: object, where: str, problems: list[str]) -> list[tuple[str, _Table]]:
    """Each [where.NAME] table, by name; a problem for anything that is not a table."""
    if raw is None:
        return []
    if not isinstance(raw, dict):
        problems.append(f"{where}: {_quote(raw)} is not a table; write [{where}.NAME] sections")
        return []
    tables = [(name, _subtable(value, _join(where, name), problems)) for name, value in raw.items()]
    return [(name, table) for name, table in tables if table is not None]


def _subtable(raw: object, where: str, problems: list[str]) -> _Table | None:
    if isinstance(raw, dict):
        return _Table(raw, where, problems)
    problems.append(f"{where}: {_quote(raw)} is not a table; write it as a [{where}] section")
    return None


def _daemon(raw: object, base: Path, problems: list[str]) -> DaemonSettings:
    table = _subtable({} if raw is None else raw, "daemon", problems)
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
        metrics_port=table.whole("metrics_port", 0, _Bounds(high=65535), example="9100"),
        sent_retention_days=table.whole("sent_retention_days", 0, _Bounds(), example="30"),
    )
    _check_retry_order(table, seconds["retry_initial_seconds"], seconds["retry_max_seconds"])
    table.reject_unknown()
    return dataclasses.replace(settings, **seconds)


def _check_retry_order(table: _Table, initial: float, most: float) -> None:
    if initial > most and not table.bad & {"retry_initial_seconds", "retry_max_seconds"}:
        why = (
            f"is more than retry_max_seconds ({_figure(most)}); lower it or raise retry_max_seconds"
        )
        table.problem("retry_initial_seconds", f"{_figure(initial)} {why}")


def _environment(name: str, table: _Table, base: Path) -> Environment:
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


def _url(table: _Table, key: str, example: str) -> str:
    url = table.text(key, example=example)
    why = _url_problem(url) if url else None
    if why is not None:
        table.problem(key, why)
    return url


def _url_problem(url: str) -> str | None:
    """What is wrong with `url` as an address of the API, or None."""
    shown = _quote(url)
    try:
        parts = urlsplit(url)
        host, _ = parts.hostname, parts.port
    except ValueError:
        return f"{shown} is not a valid URL; give one such as https://host/path"
    if parts.username is not None:
        # No quoting here: the value holds a password, maybe.
        return "holds a user name or password; remove it, as secrets never sit in the TOML"
    if parts.scheme not in ("https", "http") or not host:
        return f"{shown} is not a full https:// URL; give one such as https://host/path"
    if "?" in url or "#" in url:
        return f"{shown} has a query or fragment; remove everything from the ? or #"
    if parts.scheme == "http" and not _is_loopback(host):
        return f"{shown} is plain http:// to a host that is not loopback; use https://"
    return None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _secret(table: _Table, base: Path) -> SecretSource:
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


def _secret_value(table: _Table, kind: SecretKind, base: Path) -> str:
    example = _SECRET_EXAMPLES[kind]
    if kind is SecretKind.FILE:
        return str(table.path(kind.value, base, example=example, required=True) or "")
    value = table.text(kind.value, example=example)
    pattern, why = _SECRET_RULES[kind]
    if value and not pattern.fullmatch(value):
        table.problem(kind.value, f"{_quote(value)} {why}")
    return value


def _group(key: str, table: _Table, base: Path, environments: Sequence[str]) -> Group:
    group = Group(
        key=key,
        environment=_environment_name(table, environments),
        folder=table.path("folder", base, example='"/srv/drop/music"', required=True) or Path(),
        group_name=_group_name(table, key),
        friendly_name=table.text("friendly_name", example='"School of Music"', default=key),
        done_markers=table.choice("done_markers", DoneMarkers.AUTO),
        validation=table.choice("validation", Validation.STRICT),
        max_upload_bytes=table.whole("max_upload_bytes", 0, _Bounds(), example="1000000"),
        max_deleted_percent=table.number(
            "max_deleted_percent", 50.0, _Bounds(high=100), _PERCENT_HINT
        ),
        min_rows_for_guard=table.whole("min_rows_for_guard", 100, _Bounds(low=1), example="100"),
    )
    table.reject_unknown()
    return group


def _environment_name(table: _Table, defined: Sequence[str]) -> str:
    name = table.text("environment", example=_quote(defined[0] if defined else "test"))
    if name and name not in defined:
        hint = f"add [{_join('environments', name)}]"
        if defined:
            hint += " or use one of: " + ", ".join(defined)
        table.problem("environment", f"{_quote(name)} is not defined under [environments]; {hint}")
    return name


def _group_name(table: _Table, key: str) -> str:
    name = table.text("group_name", example=_quote(key), default=key)
    if "group_name" in table.bad or (_GROUP_NAME.fullmatch(name) and name not in (".", "..")):
        return name
    origin = (
        "" if "group_name" in table.raw else " (the table's key, used when group_name is not set)"
    )
    why = 'cannot go into the upload URL; use letters, digits, ".", "_" and "-" (not "." or "..")'
    table.problem("group_name", f"{_quote(name)}{origin} {why}")
    return name


def _check_folders_apart(groups: Sequence[Group], problems: list[str]) -> None:
    """Two groups sharing a folder, or one inside the other, would take each other's files."""
    placed = [group for group in groups if group.folder.is_absolute()]
    for index, group in enumerate(placed):
        for other in placed[:index]:
            other_name = _join("groups", other.key)
            if group.folder == other.folder:
                why = f"is also the folder of {other_name}; give each group a folder of its own"
            elif group.folder.is_relative_to(other.folder):
                why = f"is inside {other_name}'s folder {other.folder}; move it beside, not inside"
            elif other.folder.is_relative_to(group.folder):
                why = f"holds {other_name}'s folder {other.folder}; move that beside, not inside"
            else:
                continue
            problems.append(f"{_join('groups', group.key)}.folder: {group.folder} {why}")


def _check_path(where: str, path: Path, want: _Want, problems: list[str]) -> None:
    """Note a problem if `path` is missing or not the kind of thing wanted."""
    try:
        is_folder = stat.S_ISDIR(path.stat().st_mode)
    except (FileNotFoundError, NotADirectoryError):
        problems.append(f"{where}: {path} does not exist; create it or fix the path")
        return
    except OSError as exc:
        problems.append(f"{where}: {path} cannot be looked at ({exc.strerror}); check permissions")
        return
    if want == "folder" and not is_folder:
        problems.append(f"{where}: {path} is not a folder; give the path of a folder")
    elif want == "file" and is_folder:
        problems.append(f"{where}: {path} is a folder; give the path of a file")


def _join(where: str, key: str) -> str:
    """Extend a key path, quoting `key` as TOML would need it."""
    part = key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)
    return f"{where}.{part}" if where else part


def _quote(value: object) -> str:
    """A value as it was written in the TOML, for a message to quote."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return "a table" if isinstance(value, dict) else "a list"
    return str(value)


def _not_a_number(value: object, noun: str, hint: str) -> str:
    if isinstance(value, str) and value.strip().replace(".", "", 1).isdigit():
        return f"{_quote(value)} is a string, not {noun}; remove the quotes"
    return f"{_quote(value)} is not {noun}; {hint}"


def _figure(value: float) -> str:
    return str(int(value)) if value.is_integer() else str(value)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"
