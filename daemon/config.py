"""Reading and checking dropd's TOML into frozen settings; every problem as `key.path: why`."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


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
    """Read and check the TOML at `path`.

    Raises ConfigError listing every problem if the file is missing, not TOML, or invalid.
    """
    raise NotImplementedError
