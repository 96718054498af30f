"""Tests of [notify]'s apprise URLs (daemon/config/notify_urls.py) and of the [notify] table
as the loader reads it: every problem names the URL's place and scheme, never the URL."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.base.errors import ConfigError
from daemon.config.load import check_paths, load_config
from daemon.config.model import NotifyEvent, NotifySettings, NotifyUrls, UrlsKind
from daemon.config.notify_urls import (
    apprise_problem,
    apprise_reason,
    blank_url,
    read_urls,
    url_lines,
    with_sender,
)

# apprise's e-mail plugin imports the standard library's imghdr, deprecated in 3.11.
pytestmark = pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")

PASSWORD = "Relay-Pa55word"
HOOK = "json://127.0.0.1:8080/dropd"


def problems(tmp_path: Path, notify: str) -> list[str]:
    config = tmp_path / "dropd.toml"
    config.write_text(f"[notify]\n{notify}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    return caught.value.problems


def test_a_notify_table_is_read_with_every_event_by_default(tmp_path: Path) -> None:
    config = tmp_path / "dropd.toml"
    config.write_text(f'[notify]\nurls = ["{HOOK}"]\n', encoding="utf-8")
    notify = load_config(config).notify
    assert notify == NotifySettings(NotifyUrls(UrlsKind.LIST, urls=(HOOK,)), tuple(NotifyEvent))
    config.write_text("[daemon]\nsettle_seconds = 1\n", encoding="utf-8")
    assert load_config(config).notify is None


def test_each_problem_names_its_place_and_never_the_url(tmp_path: Path) -> None:
    urls = [
        f"mailto://dropd:{PASSWORD}@relay.example.edu?to=a@example.edu",  # a password
        HOOK,
        "nosuch://secret-token-here",
        "not a url at all",
    ]
    found = problems(
        tmp_path,
        "urls = [" + ", ".join(f'"{url}"' for url in urls) + "]\n"
        'on = ["batch_failed", "batch_sent", "group_error"]',
    )
    assert found == [
        'notify.on[1]: "batch_sent" is not an event dropd tells of; use some of: '
        '"batch_failed", "batch_held", "group_error", "group_recovered"',
        "notify.urls[0]: a mailto:// URL with a password; secrets never sit in the TOML: "
        "move it to urls_file or urls_credential",
        "notify.urls[2]: nosuch:// is not a scheme apprise knows; see apprise's list of services",
        "notify.urls[3]: is not an apprise URL; write it as SCHEME://..., such as mailto://...",
    ]
    text = "\n".join(found)
    assert PASSWORD not in text and "secret-token-here" not in text and "relay" not in text


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ("", "notify: no URL; give one of urls, urls_file, urls_credential"),
        (f'urls = ["{HOOK}"]\nurls_file = "u"', "notify: urls and urls_file are given; keep"),
        ("urls = []", "notify.urls: is empty; give at least one apprise URL, or remove [notify]"),
        (f'urls = "{HOOK}"', "notify.urls: "),  # a string, not a list; quoted (no password)
        ("urls = [3]", "notify.urls[0]: is 3, not a string; write each in quotes"),
        ('urls_credential = "a/b"', 'notify.urls_credential: "a/b" is not a credential name'),
        (f'urls = ["{HOOK}"]\nonn = []', "notify.onn: unknown key; remove it"),
    ],
)
def test_a_wrong_notify_table_is_a_config_error(tmp_path: Path, table: str, expected: str) -> None:
    assert any(problem.startswith(expected) for problem in problems(tmp_path, table))


def test_apprise_problem_gives_apprise_own_reason_with_the_url_blanked() -> None:
    why = apprise_problem(f"mailto://dropd:{PASSWORD}@127.0.0.1:25")  # no From: fits an IP
    assert why is not None and why.startswith("a mailto:// URL apprise cannot use (")
    assert PASSWORD not in why and "127.0.0.1" not in why and "dropd@" not in why
    assert apprise_problem(HOOK) is None


def test_url_lines_leave_out_blanks_and_comments() -> None:
    text = "# the relay\n\n  mailto://a  \n#json://off\njson://b\n"
    assert url_lines(text) == [(3, "mailto://a"), (5, "json://b")]


def test_a_urls_file_is_read_and_its_bad_lines_named(tmp_path: Path) -> None:
    urls = tmp_path / "notify.urls"
    urls.write_text(f"# ours\n{HOOK}\nmailto://dropd:{PASSWORD}@127.0.0.1:25\n")
    urls.chmod(0o600)
    settings = NotifySettings(NotifyUrls(UrlsKind.FILE, value=str(urls)))
    with pytest.raises(ConfigError) as caught:
        read_urls(settings)
    [problem] = caught.value.problems
    assert problem.startswith(f"notify.urls_file: {urls} line 3: a mailto:// URL apprise cannot")
    assert PASSWORD not in problem

    urls.write_text(f"# ours\n{HOOK}\nmailto://dropd:{PASSWORD}@relay.example.edu\n")
    found = read_urls(settings)
    assert found.urls == (HOOK, f"mailto://dropd:{PASSWORD}@relay.example.edu")
    assert found.where == (f"{urls} line 2", f"{urls} line 3")
    assert found.open_to_others == ""
    urls.chmod(0o644)
    assert read_urls(settings).open_to_others == "0o644"


def test_a_urls_file_others_can_read_or_that_is_empty_or_gone(tmp_path: Path) -> None:
    urls = tmp_path / "notify.urls"
    settings = NotifySettings(NotifyUrls(UrlsKind.FILE, value=str(urls)))
    with pytest.raises(ConfigError, match=r"cannot read .*No such file"):
        read_urls(settings)
    urls.write_text("# nothing yet\n")
    with pytest.raises(ConfigError, match="holds no URL"):
        read_urls(settings)


def test_a_urls_credential_is_read_from_the_credentials_directory(tmp_path: Path) -> None:
    (tmp_path / "notify").write_text(f"{HOOK}\n")
    settings = NotifySettings(NotifyUrls(UrlsKind.CREDENTIAL, value="notify"))
    found = read_urls(settings, {"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert found.urls == (HOOK,)
    with pytest.raises(ConfigError, match=r"needs \$CREDENTIALS_DIRECTORY"):
        read_urls(settings, {})


def test_check_paths_checks_the_urls_in_a_urls_file(tmp_path: Path) -> None:
    config = tmp_path / "dropd.toml"
    config.write_text('[notify]\nurls_file = "notify.urls"\n', encoding="utf-8")
    loaded = load_config(config)
    assert check_paths(loaded) == [
        f"notify.urls_file: {tmp_path / 'notify.urls'} does not exist; create it or fix the path"
    ]
    (tmp_path / "notify.urls").write_text("nosuch://x\n")
    [problem] = check_paths(loaded)
    assert "line 1: nosuch:// is not a scheme apprise knows" in problem


def test_blank_url_blanks_every_part_and_apprise_masking() -> None:
    url = f"mailto://dropd:{PASSWORD}@relay.example.edu/box?to=team@example.edu"
    said = f"login dropd:{PASSWORD} at relay.example.edu for team@example.edu; R...d {url}"
    blanked = blank_url(said, url)
    for part in (PASSWORD, "relay.example.edu", "team@example.edu", "R...d", "mailto://d"):
        assert part not in blanked


def test_apprise_lines_are_kept_for_the_question_and_blanked() -> None:
    url = f"mailto://dropd:{PASSWORD}@127.0.0.1:25"
    with apprise_reason(url) as said:
        logging.getLogger("apprise").error("Could not load %s (pass %s)", url, PASSWORD)
    assert said == ["Could not load [redacted] (pass [redacted])"]


def test_apprise_lines_never_reach_dropds_log() -> None:
    # In a process of its own: pytest hangs its own handlers on every logger.
    body = f"""
import logging
from daemon.base import log as dlog
from daemon.base.log import LogFormat
from daemon.config.notify_urls import apprise_problem
dlog.configure(LogFormat.JSON)
print(apprise_problem("mailto://dropd:{PASSWORD}@127.0.0.1:25"))
logging.getLogger("apprise").error("asked nothing: %s", "{PASSWORD}")
logging.getLogger("other").error("a line of another library")
"""
    done = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", body],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "a mailto:// URL apprise cannot use" in done.stdout
    assert "a line of another library" in done.stdout  # dropd's log works
    assert PASSWORD not in done.stdout + done.stderr


def test_an_email_url_without_a_sender_sends_as_dropd_at_this_host() -> None:
    # The contract's own example names no sender, which apprise alone refuses.
    url = "mailto://relay.example.edu?to=sis-team@example.edu"
    assert with_sender(url, "files1.example.edu") == url + "&from=dropd@files1.example.edu"
    assert with_sender(url, "files1") == url + "&from=dropd@example.edu"  # no domain: the to's
    assert with_sender("mailtos://relay.example.edu", "h.example.edu") == (
        "mailtos://relay.example.edu?from=dropd@h.example.edu"
    )
    assert apprise_problem(url) is None
    named = [url + "&from=me@example.edu", "mailto://user:pw@example.edu", HOOK]
    assert [with_sender(u, "h.example.edu") for u in named] == named
