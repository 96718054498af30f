"""Which config file a command reads, and the group a command names in it.

`--config F` (`-c F`) first, else `$DROPD_CONFIG`, else `/etc/dropd/dropd.toml`: a sysadmin
sets the variable once in a shell profile, or puts the file where the package put the
example, and then types `dropd status`. When the file is missing, the message says which
file was looked for and how it was chosen, since "no such file" alone does not say why
dropd looked there.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from daemon.base.errors import ConfigError
from daemon.base.names import quoted
from daemon.config.load import DEFAULT_CONFIG_PATH
from daemon.config.model import Config, Group

__all__ = [
    "CONFIG_VARIABLE",
    "ConfigChoice",
    "ConfigSource",
    "choose_config",
    "group_named",
    "is_missing",
]

CONFIG_VARIABLE = "DROPD_CONFIG"


class ConfigSource(enum.StrEnum):
    """How the config file was chosen."""

    OPTION = "--config"
    VARIABLE = "$DROPD_CONFIG"
    DEFAULT = "the default"


@dataclass(frozen=True, slots=True)
class ConfigChoice:
    path: Path
    source: ConfigSource

    def missing(self) -> str:
        """The line that says the file is not there, which it was and how it was chosen."""
        if self.source is ConfigSource.OPTION:
            how = "given with --config"
        elif self.source is ConfigSource.VARIABLE:
            how = f"from ${CONFIG_VARIABLE}; fix it, or give --config"
        else:
            how = f"the default; set --config or ${CONFIG_VARIABLE}"
        return f"dropd: no config at {self.path} ({how})"


def choose_config(given: Path | None, environ: Mapping[str, str]) -> ConfigChoice:
    """The config file a command reads: `given` (`--config`), else the variable, else the
    default. An empty variable counts as unset, as a shell's `DROPD_CONFIG=` means."""
    if given is not None:
        return ConfigChoice(given, ConfigSource.OPTION)
    if named := environ.get(CONFIG_VARIABLE, ""):
        return ConfigChoice(Path(named), ConfigSource.VARIABLE)
    return ConfigChoice(DEFAULT_CONFIG_PATH, ConfigSource.DEFAULT)


def is_missing(path: Path) -> bool:
    """True when nothing at all is at `path` (a dangling link counts as something: the
    config reader then says what is wrong with it)."""
    return not os.path.lexists(path)


def group_named(config: Config, key: str) -> Group:
    """Group `key` of `config`. Raises ConfigError naming the groups there are if it has none:
    every command that takes a GROUP exits 2 for it, as for any other usage mistake."""
    group = config.groups.get(key)
    if group is None:
        known = ", ".join(sorted(config.groups)) or "none"
        raise ConfigError([f"{config.path}: there is no group {quoted(key)} (groups: {known})"])
    return group
