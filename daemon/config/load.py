"""Reading dropd's TOML file into its settings, and `dropd check-config`: every problem is
collected and reported at once, as `key.path: why`."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from daemon.base.errors import ConfigError
from daemon.config.model import Config, SecretKind, UrlsKind
from daemon.config.notify_urls import read_urls
from daemon.config.overlap import check_folders_apart, check_state_apart
from daemon.config.tables import read_daemon, read_environment, read_group, read_notify
from daemon.config.toml import Table, check_path, join_key, sections

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "TOP_KEYS",
    "check_paths",
    "config_option",
    "load_config",
    "read_toml",
]

TOP_KEYS = ("daemon", "environments", "groups", "notify")  # the tables of the file, in their order

# Where every command looks when neither `--config` nor `$DROPD_CONFIG` names a file.
DEFAULT_CONFIG_PATH = Path("/etc/dropd/dropd.toml")


def config_option(path: Path) -> str:
    """` --config PATH` for a command a person is told to run, or "" for the default file."""
    if Path(os.path.abspath(path)) == DEFAULT_CONFIG_PATH:
        return ""
    return f" --config {os.path.abspath(path)}"


def load_config(path: Path, *, check_files: bool = False) -> Config:
    """Read and check the TOML at `path`; relative paths in it are taken from its folder.
    With `check_files`, the files and folders it names are checked too (`check_paths`), in
    the same run as the rest.

    Raises ConfigError listing every problem if the file is missing, not TOML, or invalid.
    """
    path = Path(os.path.abspath(path))
    problems: list[str] = []
    top = Table(read_toml(path), "", problems)
    daemon_raw, environments_raw, groups_raw, notify_raw = (top.get(k) for k in TOP_KEYS)
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
    notify = read_notify(notify_raw, path.parent, problems)
    check_folders_apart(list(groups.values()), problems)
    check_state_apart(daemon.state_dir, list(groups.values()), problems)
    config = Config(
        path=path, daemon=daemon, environments=environments, groups=groups, notify=notify
    )
    if check_files:
        # A key already wrong has no file to look at: its problem is said once.
        wrong = {problem.split(": ", 1)[0] for problem in problems}
        problems += [p for p in check_paths(config) if p.split(": ", 1)[0] not in wrong]
    if problems:
        raise ConfigError(problems)
    return config


def read_toml(path: Path) -> dict[str, Any]:
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


def check_paths(config: Config) -> list[str]:
    """Problems with the files and folders `config` names, as `key.path: why`; [] when none.

    Secrets from environment variables and credentials are not checked: they only exist
    inside the service. The URLs in notify.urls_file are, when this user may read it.
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
    if config.notify is not None and config.notify.urls.kind is UrlsKind.FILE:
        urls_file = Path(config.notify.urls.value)
        check_path("notify.urls_file", urls_file, "file", problems)
        if urls_file.is_file() and os.access(urls_file, os.R_OK):  # else dropd's user reads it
            try:
                read_urls(config.notify)
            except ConfigError as exc:
                problems += exc.problems
    return problems
