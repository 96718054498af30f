"""Tests of reading and checking the TOML configuration (daemon/config/load.py, and the
tables, overlap and toml modules it reads with)."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.base.errors import ConfigError
from daemon.base.log import LogFormat, LogLevel
from daemon.config.load import check_paths, load_config
from daemon.config.model import (
    Config,
    DaemonSettings,
    DoneMarkers,
    SecretKind,
    SecretSource,
    TokenAuth,
    Validation,
)
from unit.config.tomls import TEST_ENVIRONMENT, group, state_dir, write

SECRET_KEYS = "client_secret_file, client_secret_env or client_secret_credential"


def load(tmp_path: Path, text: str) -> Config:
    return load_config(write(tmp_path, text))


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    return caught.value.problems


def environment(body: str, name: str = "test") -> str:
    """An [environments.NAME] table: `body` plus whichever required keys it lacks."""
    lines = [f"[environments.{name}]", body]
    required = {
        "token_url": '"https://apps-test.iu.edu/uaa-stg/oauth/token"',
        "base_url": '"https://lms-lti-3rdpartyprovisioning-stg.apps-test.iu.edu"',
        "client_id": '"my-unit"',
    }
    lines += [f"{key} = {value}" for key, value in required.items() if f"{key} =" not in body]
    if "client_secret" not in body:
        lines.append('client_secret_env = "DROPD_TEST_SECRET"')
    return "\n".join(lines) + "\n"


# --- the file itself -------------------------------------------------------------------


def test_load_config_empty_file_gives_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, "")
    assert config.daemon == DaemonSettings()
    assert config.environments == {}
    assert config.groups == {}
    assert config.path == tmp_path / "dropd.toml"


def test_load_config_missing_file_is_one_problem_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.toml")
    assert caught.value.problems == [
        f"{tmp_path / 'nope.toml'}: does not exist; "
        "create it (see config/dropd.example.toml) or fix the path"
    ]


def test_load_config_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    found = problems(tmp_path, "[daemon]\nsettle_seconds = \n")
    assert len(found) == 1
    assert found[0].startswith(f"{tmp_path / 'dropd.toml'}: is not valid TOML: ")
    assert "line 2, column 18" in found[0]


def test_load_config_folder_instead_of_file_is_a_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    assert caught.value.problems == [f"{tmp_path}: is a folder; give the path of the TOML file"]


def test_load_config_non_utf8_file_is_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "dropd.toml"
    path.write_bytes(b'[groups.m\xfcsic]\nfolder = "x"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems == [f"{path}: is not UTF-8 text; save it as UTF-8"]


def test_load_config_reports_every_problem_at_once(tmp_path: Path) -> None:
    text = '[daemon]\nsettle_seconds = "ten"\nlog_format = "text"\n\n' + group('colour = "red"')
    assert problems(tmp_path, text) == [
        'daemon.settle_seconds: "ten" is not a number; give seconds as a number such as 10 or 0.5',
        'daemon.log_format: "text" is not a choice; use one of: "json", "console"',
        "groups.music.colour: unknown key; remove it (known keys: environment, folder, "
        "group_name, friendly_name, done_markers, validation, max_upload_bytes, encoding, "
        "max_deleted_percent, min_rows_for_guard)",
    ]


def test_load_config_error_message_joins_problems(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, "[daemon]\nquiet_seconds = 0\nsettle_seconds = -1\n")
    assert len(caught.value.problems) == 2
    assert str(caught.value) == "; ".join(caught.value.problems)


# --- unknown keys and tables ---------------------------------------------------------


def test_load_config_unknown_top_level_key(tmp_path: Path) -> None:
    assert problems(tmp_path, "colour = 1\n") == [
        "colour: unknown key; remove it (known keys: daemon, environments, groups, notify)"
    ]


def test_load_config_unknown_daemon_key_lists_known_keys(tmp_path: Path) -> None:
    [found] = problems(tmp_path, "[daemon]\nsettle = 10\n")
    assert found.startswith("daemon.settle: unknown key; remove it (known keys: state_dir, ")
    assert "settle_seconds" in found
    assert "sent_retention_days" in found


def test_load_config_unknown_environment_key(tmp_path: Path) -> None:
    [found] = problems(tmp_path, environment("scope = 'x'"))
    assert found.startswith("environments.test.scope: unknown key; remove it (known keys: ")
    assert "token_auth" in found


def test_load_config_unknown_nested_table_is_an_unknown_key(tmp_path: Path) -> None:
    [found] = problems(tmp_path, "[daemon.extra]\na = 1\n")
    assert found.startswith("daemon.extra: unknown key; remove it")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("daemon = 1\n", "daemon: 1 is not a table; write it as a [daemon] section"),
        (
            "groups = 1\n",
            "groups: 1 is not a table; write [groups.NAME] sections",
        ),
        (
            "environments = [1]\n",
            "environments: a list is not a table; write [environments.NAME] sections",
        ),
        (
            '[groups]\nmusic = "x"\n',
            'groups.music: "x" is not a table; write it as a [groups.music] section',
        ),
    ],
)
def test_load_config_section_that_is_not_a_table(tmp_path: Path, text: str, expected: str) -> None:
    assert problems(tmp_path, text) == [expected]


# --- [daemon] ------------------------------------------------------------------------


def test_load_config_reads_every_daemon_key(tmp_path: Path) -> None:
    text = """
    [daemon]
    state_dir = "/var/lib/other"
    settle_seconds = 0.5
    quiet_seconds = 1
    max_wait_seconds = 2.5
    poll_seconds = 3
    log_format = "console"
    metrics_port = 9100
    retry_initial_seconds = 0.1
    retry_max_seconds = 60
    give_up_after_seconds = 0
    connect_timeout_seconds = 1.5
    read_timeout_seconds = 30
    sent_retention_days = 7
    """
    assert load(tmp_path, text).daemon == DaemonSettings(
        state_dir=Path("/var/lib/other"),
        settle_seconds=0.5,
        quiet_seconds=1.0,
        max_wait_seconds=2.5,
        poll_seconds=3.0,
        log_format=LogFormat.CONSOLE,
        metrics_port=9100,
        retry_initial_seconds=0.1,
        retry_max_seconds=60.0,
        give_up_after_seconds=0.0,
        connect_timeout_seconds=1.5,
        read_timeout_seconds=30.0,
        sent_retention_days=7,
    )


def test_load_config_seconds_are_floats_even_when_whole(tmp_path: Path) -> None:
    settle = load(tmp_path, "[daemon]\nsettle_seconds = 10\n").daemon.settle_seconds
    assert settle == 10.0
    assert isinstance(settle, float)


def test_load_config_relative_state_dir_is_taken_from_the_config_folder(tmp_path: Path) -> None:
    config = load(tmp_path, '[daemon]\nstate_dir = "state/../var"\n')
    assert config.daemon.state_dir == tmp_path / "var"


SECONDS_HINT = "give seconds as a number such as 10 or 0.5"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('settle_seconds = "ten"', f'daemon.settle_seconds: "ten" is not a number; {SECONDS_HINT}'),
        ("poll_seconds = true", f"daemon.poll_seconds: true is not a number; {SECONDS_HINT}"),
        (
            'quiet_seconds = "30"',
            'daemon.quiet_seconds: "30" is a string, not a number; remove the quotes',
        ),
        (
            "give_up_after_seconds = nan",
            f"daemon.give_up_after_seconds: nan is not a finite number; {SECONDS_HINT}",
        ),
        (
            "max_wait_seconds = inf",
            f"daemon.max_wait_seconds: inf is not a finite number; {SECONDS_HINT}",
        ),
        (
            "metrics_port = 9100.0",
            "daemon.metrics_port: 9100.0 is not a whole number; give a whole number such as 9100",
        ),
        (
            "metrics_port = false",
            "daemon.metrics_port: false is not a whole number; give a whole number such as 9100",
        ),
        (
            'sent_retention_days = "7"',
            'daemon.sent_retention_days: "7" is a string, not a whole number; remove the quotes',
        ),
        (
            "state_dir = 3",
            "daemon.state_dir: 3 is not a string; write it in quotes, "
            'such as state_dir = "/var/lib/dropd"',
        ),
    ],
)
def test_load_config_daemon_wrong_types(tmp_path: Path, line: str, expected: str) -> None:
    assert problems(tmp_path, f"[daemon]\n{line}\n") == [expected]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "settle_seconds = -1",
            "daemon.settle_seconds: -1 is too small; give a number of 0 or more",
        ),
        (
            "poll_seconds = -0.5",
            "daemon.poll_seconds: -0.5 is too small; give a number of 0 or more",
        ),
        ("quiet_seconds = 0", "daemon.quiet_seconds: 0 is too small; give a number above 0"),
        ("max_wait_seconds = 0", "daemon.max_wait_seconds: 0 is too small; give a number above 0"),
        (
            "retry_initial_seconds = 0",
            "daemon.retry_initial_seconds: 0 is too small; give a number above 0",
        ),
        (
            "connect_timeout_seconds = 0",
            "daemon.connect_timeout_seconds: 0 is too small; give a number above 0",
        ),
        (
            "read_timeout_seconds = 0.0",
            "daemon.read_timeout_seconds: 0.0 is too small; give a number above 0",
        ),
        (
            "give_up_after_seconds = -1",
            "daemon.give_up_after_seconds: -1 is too small; give a number of 0 or more",
        ),
        (
            "metrics_port = 65536",
            "daemon.metrics_port: 65536 is too large; give a whole number between 0 and 65535",
        ),
        (
            "metrics_port = -1",
            "daemon.metrics_port: -1 is too small; give a whole number between 0 and 65535",
        ),
        (
            "sent_retention_days = -1",
            "daemon.sent_retention_days: -1 is too small; give a whole number of 0 or more",
        ),
    ],
)
def test_load_config_daemon_out_of_range(tmp_path: Path, line: str, expected: str) -> None:
    assert problems(tmp_path, f"[daemon]\n{line}\n") == [expected]


@pytest.mark.parametrize("line", ["settle_seconds = 0", "poll_seconds = 0", "metrics_port = 65535"])
def test_load_config_daemon_range_edges_are_accepted(tmp_path: Path, line: str) -> None:
    load(tmp_path, f"[daemon]\n{line}\n")


def test_load_config_retry_initial_above_retry_max(tmp_path: Path) -> None:
    text = "[daemon]\nretry_initial_seconds = 1000\n"
    assert problems(tmp_path, text) == [
        "daemon.retry_initial_seconds: 1000 is more than retry_max_seconds (900); "
        "lower it or raise retry_max_seconds"
    ]


def test_load_config_retry_initial_equal_to_retry_max_is_fine(tmp_path: Path) -> None:
    text = "[daemon]\nretry_initial_seconds = 2.5\nretry_max_seconds = 2.5\n"
    assert load(tmp_path, text).daemon.retry_max_seconds == 2.5


def test_load_config_retry_order_not_checked_when_one_is_already_wrong(tmp_path: Path) -> None:
    text = '[daemon]\nretry_initial_seconds = 1000\nretry_max_seconds = "x"\n'
    assert problems(tmp_path, text) == [
        f'daemon.retry_max_seconds: "x" is not a number; {SECONDS_HINT}'
    ]


def test_load_config_log_format_choices(tmp_path: Path) -> None:
    assert load(tmp_path, '[daemon]\nlog_format = "json"\n').daemon.log_format is LogFormat.JSON
    assert problems(tmp_path, "[daemon]\nlog_format = 1\n") == [
        'daemon.log_format: 1 is not a choice; use one of: "json", "console"'
    ]


def test_load_config_log_level_defaults_to_info_and_takes_each_level(tmp_path: Path) -> None:
    assert load(tmp_path, "").daemon.log_level is LogLevel.INFO
    for level in LogLevel:
        text = f'[daemon]\nlog_level = "{level.value}"\n'
        assert load(tmp_path, text).daemon.log_level is level


def test_load_config_unknown_log_level_names_the_key(tmp_path: Path) -> None:
    assert problems(tmp_path, '[daemon]\nlog_level = "verbose"\n') == [
        'daemon.log_level: "verbose" is not a choice; use one of: "debug", "info", "warning", '
        '"error"'
    ]


# --- [environments.NAME] ---------------------------------------------------------------


def test_load_config_reads_an_environment(tmp_path: Path) -> None:
    text = environment(
        'client_id = "unit-7"\n'
        'base_url = "https://lms-lti-3rdpartyprovisioning.apps.iu.edu/"\n'
        'token_auth = "body"\n'
        'ca_bundle = "certs/campus.pem"\n',
        name="prod",
    )
    prod = load(tmp_path, text).environments["prod"]
    assert prod.name == "prod"
    assert prod.token_url == "https://apps-test.iu.edu/uaa-stg/oauth/token"
    assert prod.base_url == "https://lms-lti-3rdpartyprovisioning.apps.iu.edu"
    assert prod.client_id == "unit-7"
    assert prod.secret == SecretSource(SecretKind.ENV, "DROPD_TEST_SECRET")
    assert prod.ca_bundle == tmp_path / "certs" / "campus.pem"
    assert prod.token_auth is TokenAuth.BODY


def test_load_config_environment_defaults(tmp_path: Path) -> None:
    test = load(tmp_path, TEST_ENVIRONMENT).environments["test"]
    assert test.ca_bundle is None
    assert test.token_auth is TokenAuth.BASIC


def test_load_config_environment_required_keys_missing(tmp_path: Path) -> None:
    text = '[environments.test]\nclient_secret_env = "S"\n'
    assert problems(tmp_path, text) == [
        "environments.test.token_url: missing; "
        'add token_url = "https://apps-test.iu.edu/uaa-stg/oauth/token"',
        "environments.test.base_url: missing; "
        'add base_url = "https://lms-lti-3rdpartyprovisioning-stg.apps-test.iu.edu"',
        'environments.test.client_id: missing; add client_id = "my-unit"',
    ]


def test_load_config_environment_empty_and_non_string_values(tmp_path: Path) -> None:
    assert problems(tmp_path, environment('client_id = ""')) == [
        'environments.test.client_id: "" is empty; give a value, such as client_id = "my-unit"'
    ]
    assert problems(tmp_path, environment("client_id = 42")) == [
        "environments.test.client_id: 42 is not a string; write it in quotes, "
        'such as client_id = "my-unit"'
    ]


def test_load_config_token_auth_choices(tmp_path: Path) -> None:
    assert problems(tmp_path, environment('token_auth = "header"')) == [
        'environments.test.token_auth: "header" is not a choice; use one of: "basic", "body"'
    ]


def test_load_config_ca_bundle_must_be_a_path_string(tmp_path: Path) -> None:
    [found] = problems(tmp_path, environment("ca_bundle = true"))
    assert found.startswith("environments.test.ca_bundle: true is not a string;")


@pytest.mark.parametrize(
    "url",
    [
        "https://lms-lti-3rdpartyprovisioning.apps.iu.edu",
        "https://host:8443/some/prefix",
        "HTTPS://host/x",
        "http://127.0.0.1:8765",
        "http://127.3.4.5/x",
        "http://localhost:8765/",
        "http://[::1]:8765",
    ],
)
def test_load_config_accepts_https_and_loopback_http(tmp_path: Path, url: str) -> None:
    load(tmp_path, environment(f'base_url = "{url}"'))


@pytest.mark.parametrize(
    ("url", "why"),
    [
        (
            "http://example.com/token",
            "is plain http:// to a host that is not loopback; use https://",
        ),
        ("http://128.0.0.1/", "is plain http:// to a host that is not loopback; use https://"),
        ("ftp://host/x", "is not a full https:// URL; give one such as https://host/path"),
        ("https:///x", "is not a full https:// URL; give one such as https://host/path"),
        ("host/x", "is not a full https:// URL; give one such as https://host/path"),
        ("https://host/x?a=1", "has a query or fragment; remove everything from the ? or #"),
        ("https://host/x#top", "has a query or fragment; remove everything from the ? or #"),
        ("https://host:port/x", "is not a valid URL; give one such as https://host/path"),
    ],
)
def test_load_config_rejects_bad_urls(tmp_path: Path, url: str, why: str) -> None:
    assert problems(tmp_path, environment(f'token_url = "{url}"')) == [
        f'environments.test.token_url: "{url}" {why}'
    ]


def test_load_config_url_with_password_is_refused_without_quoting_it(tmp_path: Path) -> None:
    [found] = problems(tmp_path, environment('base_url = "https://unit:hunter2@host/"'))
    assert found == (
        "environments.test.base_url: holds a user name or password; "
        "remove it, as secrets never sit in the TOML"
    )


# --- client secrets ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('client_secret_env = "DROPD_SECRET_1"', SecretSource(SecretKind.ENV, "DROPD_SECRET_1")),
        (
            'client_secret_credential = "dropd-test.secret"',
            SecretSource(SecretKind.CREDENTIAL, "dropd-test.secret"),
        ),
        (
            'client_secret_file = "/etc/dropd/test.secret"',
            SecretSource(SecretKind.FILE, "/etc/dropd/test.secret"),
        ),
    ],
)
def test_load_config_secret_sources(tmp_path: Path, line: str, expected: SecretSource) -> None:
    assert load(tmp_path, environment(line)).environments["test"].secret == expected


def test_load_config_relative_secret_file_is_taken_from_the_config_folder(tmp_path: Path) -> None:
    config = load(tmp_path, environment('client_secret_file = "secrets/test.secret"'))
    assert config.environments["test"].secret.value == str(tmp_path / "secrets" / "test.secret")


def test_load_config_no_secret_source(tmp_path: Path) -> None:
    text = environment('client_id = "x"').replace('client_secret_env = "DROPD_TEST_SECRET"\n', "")
    assert problems(tmp_path, text) == [
        f"environments.test: no client secret source; give one of {SECRET_KEYS}"
    ]


def test_load_config_two_secret_sources_are_named(tmp_path: Path) -> None:
    text = environment('client_secret_file = "/s"\nclient_secret_credential = "c"')
    assert problems(tmp_path, text) == [
        "environments.test: client_secret_file and client_secret_credential are given; "
        "keep exactly one of them"
    ]


def test_load_config_three_secret_sources_are_named(tmp_path: Path) -> None:
    text = environment(
        'client_secret_file = "/s"\nclient_secret_env = "E"\nclient_secret_credential = "c"'
    )
    assert problems(tmp_path, text) == [
        "environments.test: client_secret_file, client_secret_env and "
        "client_secret_credential are given; keep exactly one of them"
    ]


def test_load_config_literal_secret_is_refused_and_never_quoted(tmp_path: Path) -> None:
    found = problems(tmp_path, environment('client_secret = "hunter2"'))
    assert found == [
        "environments.test.client_secret: secrets never sit in the TOML; "
        f"remove it and use {SECRET_KEYS}"
    ]
    assert "hunter2" not in "".join(found)


def test_load_config_literal_secret_beside_a_source_is_still_refused(tmp_path: Path) -> None:
    text = environment('client_secret = "hunter2"\nclient_secret_env = "E"')
    [found] = problems(tmp_path, text)
    assert found.startswith("environments.test.client_secret: secrets never sit in the TOML")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            'client_secret_env = "1BAD"',
            'environments.test.client_secret_env: "1BAD" is not an environment variable name; '
            "use letters, digits and _, not starting with a digit",
        ),
        (
            'client_secret_credential = "creds/test"',
            'environments.test.client_secret_credential: "creds/test" is not a credential name; '
            "give the NAME of LoadCredential=NAME:PATH, without any /",
        ),
        (
            'client_secret_credential = ".."',
            'environments.test.client_secret_credential: ".." is not a credential name; '
            "give the NAME of LoadCredential=NAME:PATH, without any /",
        ),
        (
            'client_secret_file = ""',
            'environments.test.client_secret_file: "" is empty; '
            'give a value, such as client_secret_file = "/etc/dropd/test.secret"',
        ),
    ],
)
def test_load_config_bad_secret_names(tmp_path: Path, line: str, expected: str) -> None:
    assert problems(tmp_path, environment(line)) == [expected]


# --- [groups.KEY] ------------------------------------------------------------------------


def test_load_config_group_defaults(tmp_path: Path) -> None:
    music = load(tmp_path, group("")).groups["music"]
    assert music.key == "music"
    assert music.environment == "test"
    assert music.folder == Path("/srv/drop/music")
    assert music.group_name == "music"
    assert music.friendly_name == "music"
    assert music.done_markers is DoneMarkers.AUTO
    assert music.validation is Validation.STRICT
    assert music.max_upload_bytes == 0
    assert music.max_deleted_percent == 50.0
    assert music.min_rows_for_guard == 100
    assert music.encoding == "utf-8"


def test_load_config_reads_a_group_encoding_as_written(tmp_path: Path) -> None:
    assert load(tmp_path, group('encoding = "cp1252"')).groups["music"].encoding == "cp1252"
    assert load(tmp_path, group('encoding = "Latin-1"')).groups["music"].encoding == "Latin-1"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            'encoding = "latin-9"',
            'groups.music.encoding: "latin-9" is not an encoding Python knows; '
            'use e.g. "utf-8" or "cp1252"',
        ),
        (
            'encoding = "rot13"',
            'groups.music.encoding: "rot13" is not a text encoding; use e.g. "utf-8" or "cp1252"',
        ),
        (
            "encoding = 1252",
            "groups.music.encoding: 1252 is not a string; write it in quotes, such as "
            'encoding = "cp1252"',
        ),
    ],
)
def test_load_config_refuses_an_encoding_python_cannot_read_text_in(
    tmp_path: Path, line: str, expected: str
) -> None:
    assert problems(tmp_path, group(line)) == [expected]


def test_load_config_reads_every_group_key(tmp_path: Path) -> None:
    body = """
    group_name = "music.dept_1-a"
    friendly_name = "Jacobs School of Music"
    done_markers = "required"
    validation = "off"
    max_upload_bytes = 1000000
    max_deleted_percent = 12.5
    min_rows_for_guard = 1
    """
    music = load(tmp_path, group(body)).groups["music"]
    assert music.group_name == "music.dept_1-a"
    assert music.friendly_name == "Jacobs School of Music"
    assert music.done_markers is DoneMarkers.REQUIRED
    assert music.validation is Validation.OFF
    assert music.max_upload_bytes == 1000000
    assert music.max_deleted_percent == 12.5
    assert music.min_rows_for_guard == 1


def test_load_config_relative_group_folder_is_taken_from_the_config_folder(
    tmp_path: Path,
) -> None:
    music = load(tmp_path, group('folder = "drop/./music/"')).groups["music"]
    assert music.folder == tmp_path / "drop" / "music"
    assert music.folder.is_absolute()


def test_load_config_config_path_given_relative_resolves_against_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "etc").mkdir()
    write(tmp_path / "etc", group('folder = "drop"'))
    monkeypatch.chdir(tmp_path)
    config = load_config(Path("etc/dropd.toml"))
    assert config.path == tmp_path / "etc" / "dropd.toml"
    assert config.groups["music"].folder == tmp_path / "etc" / "drop"


def test_load_config_does_not_touch_folders_or_secrets(tmp_path: Path) -> None:
    text = group('folder = "missing/music"').replace(
        'client_secret_env = "DROPD_TEST_SECRET"', 'client_secret_file = "missing.secret"'
    )
    config = load(tmp_path, text)
    assert not (tmp_path / "missing").exists()
    assert config.groups["music"].folder == tmp_path / "missing" / "music"


def test_load_config_no_groups_is_valid(tmp_path: Path) -> None:
    assert load(tmp_path, TEST_ENVIRONMENT).groups == {}


def test_load_config_group_required_keys_missing(tmp_path: Path) -> None:
    assert problems(tmp_path, TEST_ENVIRONMENT + "[groups.music]\n") == [
        'groups.music.environment: missing; add environment = "test"',
        'groups.music.folder: missing; add folder = "/srv/drop/music"',
    ]


def test_load_config_group_environment_must_be_defined(tmp_path: Path) -> None:
    assert problems(tmp_path, group('environment = "prod"')) == [
        'groups.music.environment: "prod" is not defined under [environments]; '
        "add [environments.prod] or use one of: test"
    ]


def test_load_config_group_environment_without_any_environment(tmp_path: Path) -> None:
    text = '[groups.music]\nenvironment = "prod"\nfolder = "/srv/drop/music"\n'
    assert problems(tmp_path, text) == [
        'groups.music.environment: "prod" is not defined under [environments]; '
        "add [environments.prod]"
    ]


def test_load_config_group_environment_that_is_itself_invalid_is_still_defined(
    tmp_path: Path,
) -> None:
    text = group("").replace('client_id = "my-unit"\n', "")
    assert problems(tmp_path, text) == [
        'environments.test.client_id: missing; add client_id = "my-unit"'
    ]


@pytest.mark.parametrize("name", ["my music", "music/x", "müsic", ".", ".."])
def test_load_config_group_name_must_fit_a_url_path(tmp_path: Path, name: str) -> None:
    assert problems(tmp_path, group(f'group_name = "{name}"')) == [
        f'groups.music.group_name: "{name}" cannot go into the upload URL; '
        'use letters, digits, ".", "_" and "-" (not "." or "..")'
    ]


def test_load_config_group_key_used_as_group_name_must_fit_a_url_path(tmp_path: Path) -> None:
    text = TEST_ENVIRONMENT + '[groups."my music"]\nenvironment = "test"\nfolder = "/m"\n'
    assert problems(tmp_path, text) == [
        'groups."my music".group_name: "my music" (the table\'s key, used when group_name '
        'is not set) cannot go into the upload URL; use letters, digits, ".", "_" and "-" '
        '(not "." or "..")'
    ]


def test_load_config_group_key_that_is_no_url_name_is_fine_with_a_group_name(
    tmp_path: Path,
) -> None:
    text = (
        TEST_ENVIRONMENT
        + '[groups."Music school"]\nenvironment = "test"\nfolder = "/m"\ngroup_name = "music"\n'
    )
    music = load(tmp_path, text).groups["Music school"]
    assert music.group_name == "music"
    assert music.friendly_name == "Music school"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            'done_markers = "yes"',
            'groups.music.done_markers: "yes" is not a choice; '
            'use one of: "auto", "required", "off"',
        ),
        (
            'validation = "lenient"',
            'groups.music.validation: "lenient" is not a choice; use one of: "strict", "off"',
        ),
        (
            "max_upload_bytes = -1",
            "groups.music.max_upload_bytes: -1 is too small; give a whole number of 0 or more",
        ),
        (
            "max_upload_bytes = 1.5e6",
            "groups.music.max_upload_bytes: 1500000.0 is not a whole number; "
            "give a whole number such as 1000000",
        ),
        (
            "max_deleted_percent = 100.5",
            "groups.music.max_deleted_percent: 100.5 is too large; give a number between 0 and 100",
        ),
        (
            "max_deleted_percent = -1",
            "groups.music.max_deleted_percent: -1 is too small; give a number between 0 and 100",
        ),
        (
            'max_deleted_percent = "half"',
            'groups.music.max_deleted_percent: "half" is not a number; '
            "give a percentage such as 50, or 0 to turn the guard off",
        ),
        (
            "min_rows_for_guard = 0",
            "groups.music.min_rows_for_guard: 0 is too small; give a whole number of 1 or more",
        ),
        (
            'friendly_name = ""',
            'groups.music.friendly_name: "" is empty; '
            'give a value, such as friendly_name = "School of Music"',
        ),
        (
            'folder = "a\\u0000b"',
            'groups.music.folder: "a\\u0000b" holds a NUL; '
            'give the full path, such as "/srv/drop/music"',
        ),
        (
            'folder = "~/drop"',
            'groups.music.folder: "~/drop" starts with ~, which is not expanded; '
            'give the full path, such as "/srv/drop/music"',
        ),
    ],
)
def test_load_config_group_bad_values(tmp_path: Path, line: str, expected: str) -> None:
    assert problems(tmp_path, group(line)) == [expected]


@pytest.mark.parametrize("percent", ["0", "100", "33.3"])
def test_load_config_max_deleted_percent_range_edges(tmp_path: Path, percent: str) -> None:
    music = load(tmp_path, group(f"max_deleted_percent = {percent}")).groups["music"]
    assert music.max_deleted_percent == float(percent)


def two_groups(music: str, art: str) -> str:
    """Groups `music` and `art` on one environment, in the folders given."""
    return group(f'folder = "{music}"') + group(f'folder = "{art}"', key="art").replace(
        TEST_ENVIRONMENT, ""
    )


@pytest.mark.parametrize(
    ("music", "art", "expected"),
    [
        (
            "drop/x",
            "drop/x/",
            "groups.art.folder: {root}/drop/x is also the folder of groups.music; "
            "give each group a folder of its own",
        ),
        (
            "/srv/drop",
            "/srv/drop/art",
            "groups.art.folder: /srv/drop/art is inside groups.music's folder /srv/drop; "
            "move it beside, not inside",
        ),
        (
            "/srv/drop/music",
            "/srv",
            "groups.art.folder: /srv holds groups.music's folder /srv/drop/music; "
            "move that beside, not inside",
        ),
    ],
    ids=["shared", "inside_another", "holding_another"],
)
def test_load_config_group_folders_may_not_overlap(
    tmp_path: Path, music: str, art: str, expected: str
) -> None:
    assert problems(tmp_path, two_groups(music, art)) == [expected.format(root=tmp_path)]


def test_load_config_sibling_folders_with_a_common_prefix_are_fine(tmp_path: Path) -> None:
    text = two_groups("/srv/drop/music", "/srv/drop/music2")
    assert set(load(tmp_path, text).groups) == {"music", "art"}


def test_load_config_group_folder_that_links_to_another_groups_folder(tmp_path: Path) -> None:
    (tmp_path / "drop" / "music").mkdir(parents=True)
    (tmp_path / "art").symlink_to(tmp_path / "drop" / "music")
    text = two_groups("drop/music", "art")
    music = tmp_path / "drop" / "music"
    assert problems(tmp_path, text) == [
        f"groups.art.folder: {tmp_path / 'art'} ({music} once links are followed) is also the "
        f"folder of groups.music {music}; give each group a folder of its own"
    ]


def test_load_config_group_folder_inside_another_through_a_link(tmp_path: Path) -> None:
    (tmp_path / "drop" / "music").mkdir(parents=True)
    (tmp_path / "art").symlink_to(tmp_path / "drop" / "music")
    text = group('folder = "drop/music"') + group('folder = "art/sub"', key="art").replace(
        TEST_ENVIRONMENT, ""
    )
    music = tmp_path / "drop" / "music"
    assert problems(tmp_path, text) == [
        f"groups.art.folder: {tmp_path / 'art' / 'sub'} ({music / 'sub'} once links are "
        f"followed) is inside groups.music's folder {music}; move it beside, not inside"
    ]


def test_load_config_group_folders_apart_through_links_are_fine(tmp_path: Path) -> None:
    (tmp_path / "real" / "art").mkdir(parents=True)
    (tmp_path / "drop" / "music").mkdir(parents=True)
    (tmp_path / "drop" / "art").symlink_to(tmp_path / "real" / "art")
    text = group('folder = "drop/music"') + group('folder = "drop/art"', key="art").replace(
        TEST_ENVIRONMENT, ""
    )
    assert set(load(tmp_path, text).groups) == {"music", "art"}


def test_load_config_a_thousand_groups_side_by_side_pass(tmp_path: Path) -> None:
    text = TEST_ENVIRONMENT + "".join(
        group(f'folder = "/srv/drop/g{n}"', key=f"g{n}").replace(TEST_ENVIRONMENT, "")
        for n in range(1000)
    )
    assert len(load(tmp_path, text).groups) == 1000


KEEP_STATE = "keep dropd's state outside the drop folders (e.g. /var/lib/dropd)"


def test_load_config_state_dir_may_not_be_a_groups_folder(tmp_path: Path) -> None:
    text = state_dir("/srv/drop/music") + group('folder = "/srv/drop/music"')
    assert problems(tmp_path, text) == [
        f"daemon.state_dir: /srv/drop/music is also groups.music's folder; {KEEP_STATE}"
    ]


def test_load_config_state_dir_may_not_be_inside_a_groups_folder(tmp_path: Path) -> None:
    text = state_dir("/srv/drop/music/state") + group('folder = "/srv/drop/music"')
    assert problems(tmp_path, text) == [
        "daemon.state_dir: /srv/drop/music/state is inside groups.music's folder "
        f"/srv/drop/music; {KEEP_STATE}"
    ]


def test_load_config_state_dir_may_not_hold_a_groups_folder(tmp_path: Path) -> None:
    text = (
        state_dir("/srv")
        + group('folder = "/srv/drop/music"')
        + group('folder = "/srv/drop/art"', key="art").replace(TEST_ENVIRONMENT, "")
        + group('folder = "/home/drop/math"', key="math").replace(TEST_ENVIRONMENT, "")
    )
    hint = "give dropd's state a folder of its own, beside the drop folders (e.g. /var/lib/dropd)"
    assert problems(tmp_path, text) == [
        f"daemon.state_dir: /srv is not allowed: it holds groups.music's folder /srv/drop/music; "
        f"{hint}",
        f"daemon.state_dir: /srv is not allowed: it holds groups.art's folder /srv/drop/art; "
        f"{hint}",
    ]


def test_load_config_state_dir_beside_the_drop_folders_is_fine(tmp_path: Path) -> None:
    text = state_dir("/srv/drop/music-state") + group('folder = "/srv/drop/music"')
    assert load(tmp_path, text).daemon.state_dir == Path("/srv/drop/music-state")


def test_load_config_relative_state_dir_in_a_relative_group_folder(tmp_path: Path) -> None:
    text = state_dir("drop/.state") + group('folder = "drop"')
    assert problems(tmp_path, text) == [
        f"daemon.state_dir: {tmp_path / 'drop' / '.state'} is inside groups.music's folder "
        f"{tmp_path / 'drop'}; {KEEP_STATE}"
    ]


def test_load_config_state_dir_that_links_into_a_drop_folder(tmp_path: Path) -> None:
    music = tmp_path / "drop" / "music"
    (music / "state").mkdir(parents=True)
    (tmp_path / "state").symlink_to(music / "state")
    text = state_dir("state") + group('folder = "drop/music"')
    assert problems(tmp_path, text) == [
        f"daemon.state_dir: {tmp_path / 'state'} ({music / 'state'} once links are followed) "
        f"is inside groups.music's folder {music}; {KEEP_STATE}"
    ]


def test_load_config_state_dir_that_links_to_a_drop_folder(tmp_path: Path) -> None:
    music = tmp_path / "drop" / "music"
    music.mkdir(parents=True)
    (tmp_path / "state").symlink_to(music)
    text = state_dir("state") + group('folder = "drop/music"')
    assert problems(tmp_path, text) == [
        f"daemon.state_dir: {tmp_path / 'state'} ({music} once links are followed) is also "
        f"groups.music's folder {music}; {KEEP_STATE}"
    ]


def test_load_config_state_dir_not_made_yet_under_a_link_into_a_drop_folder(
    tmp_path: Path,
) -> None:
    # dropd makes state_dir at start: the link above it is followed all the same.
    music = tmp_path / "drop" / "music"
    music.mkdir(parents=True)
    (tmp_path / "var").symlink_to(music)
    text = state_dir("var/dropd") + group('folder = "drop/music"')
    assert problems(tmp_path, text) == [
        f"daemon.state_dir: {tmp_path / 'var' / 'dropd'} ({music / 'dropd'} once links are "
        f"followed) is inside groups.music's folder {music}; {KEEP_STATE}"
    ]
    assert not (music / "dropd").exists()


def test_load_config_drop_folder_that_links_into_the_state_dir(tmp_path: Path) -> None:
    (tmp_path / "state" / "music").mkdir(parents=True)
    (tmp_path / "music").symlink_to(tmp_path / "state" / "music")
    text = state_dir("state") + group('folder = "music"')
    state, music = tmp_path / "state", tmp_path / "music"
    assert problems(tmp_path, text) == [
        f"daemon.state_dir: {state} is not allowed: it holds groups.music's folder {music} "
        f"({state / 'music'} once links are followed); give dropd's state a folder of its own, "
        "beside the drop folders (e.g. /var/lib/dropd)"
    ]


# --- check_paths -----------------------------------------------------------------------------


def paths_config(
    tmp_path: Path, secret: str = 'client_secret_env = "S"', extra: str = ""
) -> Config:
    text = environment(f"{secret}\n{extra}") + group('folder = "drop"').replace(
        TEST_ENVIRONMENT, ""
    )
    return load(tmp_path, text)


def test_check_paths_all_present(tmp_path: Path) -> None:
    (tmp_path / "drop").mkdir()
    (tmp_path / "test.secret").write_text("s")
    (tmp_path / "ca.pem").write_text("pem")
    config = paths_config(tmp_path, 'client_secret_file = "test.secret"', 'ca_bundle = "ca.pem"')
    assert check_paths(config) == []


def test_check_paths_missing_group_folder(tmp_path: Path) -> None:
    assert check_paths(paths_config(tmp_path)) == [
        f"groups.music.folder: {tmp_path / 'drop'} does not exist; create it or fix the path"
    ]


def test_check_paths_group_folder_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "drop").write_text("")
    assert check_paths(paths_config(tmp_path)) == [
        f"groups.music.folder: {tmp_path / 'drop'} is not a folder; give the path of a folder"
    ]


def test_check_paths_missing_ca_bundle_and_secret_file(tmp_path: Path) -> None:
    (tmp_path / "drop").mkdir()
    config = paths_config(tmp_path, 'client_secret_file = "test.secret"', 'ca_bundle = "ca.pem"')
    assert check_paths(config) == [
        f"environments.test.ca_bundle: {tmp_path / 'ca.pem'} does not exist; "
        "create it or fix the path",
        f"environments.test.client_secret_file: {tmp_path / 'test.secret'} does not exist; "
        "create it or fix the path",
    ]


def test_check_paths_secret_file_that_is_a_folder(tmp_path: Path) -> None:
    (tmp_path / "drop").mkdir()
    (tmp_path / "test.secret").mkdir()
    config = paths_config(tmp_path, 'client_secret_file = "test.secret"')
    assert check_paths(config) == [
        f"environments.test.client_secret_file: {tmp_path / 'test.secret'} is a folder; "
        "give the path of a file"
    ]


def test_check_paths_ca_bundle_may_be_a_folder_of_certificates(tmp_path: Path) -> None:
    (tmp_path / "drop").mkdir()
    (tmp_path / "certs").mkdir()
    assert check_paths(paths_config(tmp_path, extra='ca_bundle = "certs"')) == []


@pytest.mark.parametrize(
    "secret", ['client_secret_env = "NOT_SET_ANYWHERE"', 'client_secret_credential = "nowhere"']
)
def test_check_paths_leaves_env_and_credential_secrets_alone(tmp_path: Path, secret: str) -> None:
    (tmp_path / "drop").mkdir()
    assert check_paths(paths_config(tmp_path, secret)) == []
