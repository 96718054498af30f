"""Tests of the configuration reference and the example configs, written from the settings'
own defaults and meanings (daemon/config/reference.py, examples.py, keys.py)."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any

import pytest

from daemon.config.examples import EXAMPLE, EXAMPLES, Example
from daemon.config.keys import REQUIRED, settings_of, toml_value
from daemon.config.load import TOP_KEYS, load_config
from daemon.config.model import SECTIONS, Config, DaemonSettings, SecretKind
from daemon.config.reference import COMMAND, generated, page
from daemon.config.tables import read_daemon, read_environment, read_group, read_notify
from daemon.config.toml import Table

REPO = Path(__file__).resolve().parents[3]


class _Asked(dict[str, Any]):
    """An empty TOML table that notes each key the loader asks it for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[str] = []

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.append(key)
        return super().get(key, default)


def keys_the_loader_reads(kind: str) -> set[str]:
    raw, problems, base = _Asked(), list[str](), Path("/etc/dropd")
    if kind == "daemon":
        read_daemon(raw, base, problems)
    elif kind == "environments":
        read_environment("test", Table(raw, "environments.test", problems), base)
    elif kind == "notify":
        read_notify(raw, base, problems)
    else:
        read_group("music", Table(raw, "groups.music", problems), base, ["test"])
    return set(raw.asked)


def documented(kind: str) -> set[str]:
    section = next(section for section in SECTIONS if section.kind == kind)
    return {name for setting in settings_of(section.settings) for name in setting.names}


def loaded(config: Config, header: str) -> Any:
    """The settings that the table `header` (such as "groups.music") became."""
    kind, _, name = header.partition(".")
    return config.daemon if kind == "daemon" else getattr(config, kind)[name]


# --- the code documents every key -----------------------------------------------------------


def test_every_table_of_the_file_has_a_section() -> None:
    assert [section.kind for section in SECTIONS] == list(TOP_KEYS)


@pytest.mark.parametrize("kind", TOP_KEYS)
def test_every_key_the_loader_reads_has_its_meaning_in_the_code(kind: str) -> None:
    read, known = keys_the_loader_reads(kind), documented(kind)
    assert read, "the loader asked for no key: the probe no longer sees its reads"
    assert not read - known, f"keys read by tables.py without about(...) metadata: {read - known}"
    assert not known - read, f"keys documented but never read by the loader: {known - read}"


@pytest.mark.parametrize("section", SECTIONS, ids=lambda section: section.kind)
def test_every_key_says_what_it_means_and_what_each_choice_does(section: Any) -> None:
    for setting in settings_of(section.settings):
        assert setting.key.meaning.strip(), setting.name
        if isinstance(setting.type, type) and issubclass(setting.type, enum.Enum):
            assert list(setting.key.choices) == list(setting.type), setting.name
        for alternative in setting.key.one_of.values():
            assert alternative.meaning.strip() and alternative.type, setting.name


def test_the_secret_keys_are_the_secret_kinds() -> None:
    assert documented("environments") >= {kind.value for kind in SecretKind}


def test_a_key_without_a_default_says_required() -> None:
    rows = {line.split(" | ")[0]: line.split(" | ") for line in page().splitlines()}
    for section in SECTIONS:
        for setting in settings_of(section.settings):
            if setting.default is REQUIRED and not setting.key.default:
                for name in setting.names:
                    assert rows[f"| `{name}`"][2].startswith("required"), name


def test_the_reference_gives_each_default_as_it_is_written_in_the_toml() -> None:
    text = page()
    assert '| `state_dir` | path | `"/var/lib/dropd"` | ' in text
    assert "| `settle_seconds` | number (seconds) | `10` | 0 or more | " in text
    assert "| `max_deleted_percent` | number (percent) | `50` | between 0 and 100 | " in text
    assert '| `done_markers` | choice | `"auto"` | `"auto"`, `"required"`, `"off"` | ' in text


# --- the committed files are the code's -----------------------------------------------------


@pytest.mark.parametrize("path", sorted(generated()))
def test_committed_file_is_what_the_code_writes(path: str) -> None:
    committed = (REPO / path).read_text(encoding="utf-8")
    assert committed == generated()[path](), (
        f"{path} differs from what the settings in daemon/config/ write: "
        f"run `.venv/bin/{COMMAND}` and commit the result"
    )


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda example: example.path)
def test_example_loads_with_the_defaults_it_shows(example: Example) -> None:
    config = load_config(REPO / example.path)
    for sample in example.samples:
        if sample.commented:  # an optional table shown, not set
            continue
        settings = loaded(config, sample.header)
        for name, default in sample.written_defaults():
            assert getattr(settings, name) == default, f"[{sample.header}] {name}"
        for name, value in sample.values.items():
            if hasattr(settings, name):
                shown = toml_value(getattr(settings, name))
                assert shown == toml_value(value), f"[{sample.header}] {name}"


def test_example_shows_every_key_and_every_kind_of_secret() -> None:
    config = load_config(REPO / EXAMPLE.path)
    assert config.daemon == DaemonSettings()
    assert set(config.environments) == {"production", "test", "beta"}
    kinds = {environment.secret.kind for environment in config.environments.values()}
    assert kinds == set(SecretKind)
    assert config.environments["production"].secret.kind is SecretKind.CREDENTIAL
    assert len(config.groups) == 2
    text = (REPO / EXAMPLE.path).read_text(encoding="utf-8")
    for kind in TOP_KEYS:
        for name in documented(kind):
            assert f"\n{name} = " in text or f"\n# {name} = " in text, name


def test_example_uses_the_provider_urls() -> None:
    environments = load_config(REPO / EXAMPLE.path).environments
    test_token = "https://apps-test.iu.edu/uaa-stg/oauth/token"
    assert environments["production"].token_url == "https://apps.iu.edu/uaa-prd/oauth/token"
    assert environments["test"].token_url == environments["beta"].token_url == test_token
    assert environments["production"].base_url == (
        "https://lms-lti-3rdpartyprovisioning.apps.iu.edu"
    )
    assert environments["test"].base_url == (
        "https://lms-lti-3rdpartyprovisioning-stg.apps-test.iu.edu"
    )
    assert environments["beta"].base_url == (
        "https://lms-lti-3rdpartyprovisioning-reg.apps-test.iu.edu"
    )


def test_reference_says_of_each_key_whether_a_reload_applies_it() -> None:
    rows = {line.split(" | ")[0]: line.split(" | ") for line in page().splitlines()}
    assert rows["| `state_dir`"][-1] == "restart |"
    assert rows["| `log_level`"][-1] == "applied |"
    keys = [row for name, row in rows.items() if name.startswith("| `")]
    assert all(row[-1] in ("restart |", "applied |") for row in keys)
