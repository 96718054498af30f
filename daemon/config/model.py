"""Reading and checking dropd's TOML into frozen settings; every problem as `key.path: why`."""

from __future__ import annotations

import enum
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from daemon.base.errors import ConfigError
from daemon.base.log import LogFormat
from daemon.config.toml import Table, check_path, join_key, sections


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
    # Imported here, not at the top: the table readers build the settings defined above.
    from daemon.config.tables import (
        check_folders_apart,
        check_state_apart,
        read_daemon,
        read_environment,
        read_group,
        read_toml,
    )

    path = Path(os.path.abspath(path))
    problems: list[str] = []
    top = Table(read_toml(path), "", problems)
    daemon_raw, environments_raw, groups_raw = (top.get(k) for k in _TOP_KEYS)
    top.reject_unknown()
    daemon = read_daemon(daemon_raw, path.parent, problems)
    environment_tables = sections(environments_raw, "environments", problems)
    environments = {
        name: read_environment(name, table, path.parent) for name, table in environment_tables
    }
    defined = [name for name, _ in environment_tables]
    groups = {
        key: read_group(key, table, path.parent, defined)
        for key, table in sections(groups_raw, "groups", problems)
    }
    check_folders_apart(list(groups.values()), problems)
    check_state_apart(daemon.state_dir, list(groups.values()), problems)
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


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"
