"""Tests of the keys' metadata on the settings fields (daemon/config/keys.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.base.log import LogFormat
from daemon.config.keys import REQUIRED, default_of, key_of, settings_of, toml_value
from daemon.config.model import DaemonSettings, Environment, Group
from daemon.config.toml import Bounds


def test_toml_value_writes_each_default_as_the_toml_does() -> None:
    assert toml_value(Path("/var/lib/dropd")) == '"/var/lib/dropd"'
    assert toml_value(10.0) == "10"
    assert toml_value(0.5) == "0.5"
    assert toml_value(LogFormat.JSON) == '"json"'
    assert toml_value(100) == "100"
    assert toml_value('say "hi"') == '"say \\"hi\\""'


def test_settings_of_gives_the_keys_in_their_order_with_their_defaults() -> None:
    settings = settings_of(DaemonSettings)
    assert settings[0].name == "state_dir"
    assert settings[0].default == Path("/var/lib/dropd")
    assert [setting.name for setting in settings] == list(DaemonSettings.__dataclass_fields__)


def test_fields_that_are_table_names_are_not_keys() -> None:
    assert "name" not in [setting.name for setting in settings_of(Environment)]
    assert "key" not in [setting.name for setting in settings_of(Group)]


def test_the_secret_is_one_field_given_by_one_of_three_keys() -> None:
    [secret] = [setting for setting in settings_of(Environment) if setting.name == "secret"]
    assert secret.names == (
        "client_secret_file",
        "client_secret_env",
        "client_secret_credential",
    )
    assert secret.default is REQUIRED


def test_the_loader_reads_its_ranges_and_defaults_from_the_fields() -> None:
    assert key_of(Group, "max_deleted_percent").bounds == Bounds(high=100)
    assert default_of(Group, "min_rows_for_guard") == 100
    with pytest.raises(LookupError):
        default_of(Group, "folder")
