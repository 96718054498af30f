"""`dropd verify`: each group checked step by step, like the provider's "Verify Account" button.

    config    the config loads; the environment's secret can be read, its ca_bundle loaded
    folder    the drop folder is a folder dropd may write; sent/, failed/, .dropd/ and held/
              are on its file system (`daemon/spool/folder_checks.py`)
    token     a token is fetched from the token URL, and kept nowhere
    endpoint  the group's upload URL answers HTTP to a GET (nothing is uploaded)

With a [notify] table, a last line says whether its URLs can be read and apprise takes each
(nothing is sent). It changes nothing: no file is created, no token cached. Exit 0 when
every step is ok, 1 when one fails, 2 on a bad config or an unknown group.
"""

from __future__ import annotations

import argparse
import enum
import logging
import os
import ssl
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import requests

from daemon.base import log as logsetup
from daemon.base.errors import ConfigError, SecretError, TokenError
from daemon.base.log import LogFormat
from daemon.config.load import load_config
from daemon.config.model import Config, Environment, Group, NotifySettings, UrlsKind
from daemon.config.notify_urls import read_urls, scheme_of
from daemon.config.toml import check_path, join_key
from daemon.observe.alerts import send_test
from daemon.provider import upload as api
from daemon.provider.tokens import TokenSource, read_secret
from daemon.spool.folder_checks import folder_problems

# A check should not wait the daemon's read timeout (300 s by default) for an answer.
CHECK_READ_SECONDS = 30.0


class Check(enum.Enum):
    """The checks `dropd verify` makes of a group, in order (not a batch's `Step`)."""

    CONFIG = "config"
    FOLDER = "folder"
    TOKEN = "token"
    ENDPOINT = "endpoint"


@dataclass(frozen=True, slots=True)
class CheckResult:
    step: Check
    problem: str = ""  # "" when ok
    skipped: str = ""  # why the step could not be tried (an earlier step failed)

    @property
    def ok(self) -> bool:
        return not self.problem and not self.skipped

    def text(self) -> str:
        """`ok`, `failed: REASON` or `skipped: WHY`."""
        if self.problem:
            return f"failed: {self.problem}"
        return f"skipped: {self.skipped}" if self.skipped else "ok"


@dataclass(frozen=True, slots=True)
class Access:
    """What one environment gives its groups: the config step's problem, else a token."""

    problem: str = ""  # the secret or ca_bundle is not usable
    token: str = ""  # never printed, never stored
    token_problem: str = ""


def run(args: argparse.Namespace) -> int:
    """`dropd verify`, as the command line asked for it."""
    return verify_command(args.config, args.groups, send_test=args.send_test)


def verify_command(config_path: Path, names: Sequence[str], *, send_test: bool = False) -> int:
    """`dropd verify`: a line per group and step; returns 0, 1 or 2 (see the module).
    `send_test`: also a test message through each of [notify]'s URLs."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        print("\n".join(exc.problems), file=sys.stderr)
        return 2
    unknown = [name for name in names if name not in config.groups]
    if unknown:
        known = ", ".join(config.groups) or "none"
        listed = ", ".join(repr(name) for name in unknown)
        print(f"{config_path}: there is no group {listed} (groups: {known})", file=sys.stderr)
        return 2
    # Warnings (a secret file others can read) go to stderr; token_fetched and kin nowhere.
    logsetup.configure(LogFormat.CONSOLE, sys.stderr, logging.WARNING)
    keys = list(dict.fromkeys(names)) or list(config.groups)
    width = max((len(key) for key in keys), default=0)
    access: dict[str, Access] = {}
    failed = False
    for key in keys:
        for result in verify_group(config, config.groups[key], access):
            print(f"{key:<{width}}  {result.step.value:<8}  {result.text()}")
            failed = failed or not result.ok
    if config.notify is not None:
        told = notify_result(config.notify)
        print(f"{'[notify]':<{width}}  {'urls':<8}  {told}")
        failed = failed or told.startswith("failed")
        if send_test and told.startswith("ok"):
            for line in test_results(config.notify):
                print(f"{'[notify]':<{width}}  {'test':<8}  {line}")
                failed = failed or line.startswith("failed")
    elif send_test:
        print(f"{config_path}: --send-test: the config has no [notify] table", file=sys.stderr)
        failed = True
    return 1 if failed else 0


def test_results(notify: NotifySettings) -> list[str]:
    """A test message through each URL: a line each, naming it by its place and scheme."""
    return [
        f"sent through {target.where} ({target.scheme})"
        if failure is None
        else f"failed through {target.where} ({target.scheme}): {failure}"
        for target, failure in send_test(read_urls(notify))
    ]


def notify_result(notify: NotifySettings) -> str:
    """Whether [notify]'s URLs can be read and apprise takes each; nothing is sent."""
    if notify.urls.kind is UrlsKind.CREDENTIAL and "CREDENTIALS_DIRECTORY" not in os.environ:
        return "skipped: urls_credential is read inside the service only"
    try:
        found = read_urls(notify)
    except ConfigError as exc:
        return f"failed: {'; '.join(exc.problems)}"
    schemes = ", ".join(sorted({scheme_of(url) for url in found.urls}))
    return f"ok ({len(found.urls)} URL{'' if len(found.urls) == 1 else 's'}: {schemes})"


def verify_group(config: Config, group: Group, access: dict[str, Access]) -> list[CheckResult]:
    """Every step for one group; `access` keeps each environment's token for its other groups."""
    env = config.environments[group.environment]
    if env.name not in access:
        access[env.name] = environment_access(config, env)
    got = access[env.name]
    problems = folder_problems(group.folder)
    return [
        CheckResult(Check.CONFIG, got.problem),
        CheckResult(Check.FOLDER, "; ".join(problems)),
        _token_result(got),
        _endpoint_result(config, env, group, got),
    ]


def environment_access(config: Config, env: Environment) -> Access:
    """Read the environment's secret and fetch a token with it (kept nowhere)."""
    problem = _config_problem(env)
    if problem:
        return Access(problem)
    try:
        secret = read_secret(env)
    except SecretError as exc:
        return Access(str(exc))
    source = TokenSource(env, secret, config.daemon.state_dir, _timeouts(config))
    try:
        return Access(token=source.fetch_uncached())
    except TokenError as exc:
        return Access(token_problem=str(exc))


def _config_problem(env: Environment) -> str:
    if env.ca_bundle is None:
        return ""
    where = f"{join_key('environments', env.name)}.ca_bundle"
    problems: list[str] = []
    check_path(where, env.ca_bundle, "any", problems)
    if problems:
        return problems[0]
    try:
        api.trust_with(env.ca_bundle)
    except (ssl.SSLError, OSError) as exc:
        why = f"holds no CA certificate dropd can load ({exc}); give a PEM file"
        return f"{where}: {env.ca_bundle} {why}"
    return ""


def _token_result(got: Access) -> CheckResult:
    if got.problem:
        return CheckResult(Check.TOKEN, skipped="the config step failed")
    return CheckResult(Check.TOKEN, got.token_problem)


def _endpoint_result(config: Config, env: Environment, group: Group, got: Access) -> CheckResult:
    if got.problem:
        return CheckResult(Check.ENDPOINT, skipped="the config step failed")
    url = api.upload_url(env.base_url, group.group_name)
    return CheckResult(Check.ENDPOINT, reach_endpoint(url, got.token, env, _timeouts(config)))


def reach_endpoint(url: str, token: str, env: Environment, timeouts: tuple[float, float]) -> str:
    """GET the upload URL (with the token when there is one); "" if its answer is fine."""
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    session = api.new_session(env.ca_bundle)
    try:
        with session.get(
            url, headers=headers, timeout=timeouts, allow_redirects=False, stream=True
        ) as answer:
            status = answer.status_code
    except requests.exceptions.SSLError as exc:
        return api.untrusted_reason(exc, url)
    except requests.Timeout:
        return f"{url} did not answer within {timeouts[1]:g} s; check base_url and the network"
    except requests.RequestException as exc:
        return (
            f"{url} cannot be reached: {type(exc).__name__}; check base_url, the network "
            "and the proxy variables (HTTPS_PROXY, NO_PROXY)"
        )
    finally:
        session.close()
    return endpoint_problem(status, bool(token), url, env)


def endpoint_problem(status: int, with_token: bool, url: str, env: Environment) -> str:
    """Whether an HTTP answer to the GET means trouble; "" if the endpoint is fine.

    Any answer proves the server is reachable. The API answers a GET of its upload path with
    401 (no token) or 405 (a good one: it takes only POST); 404 says base_url is wrong. With a
    token, 401 and 403 say the API will not take uploads from this client, and 5xx that the
    API (or a proxy before it) is down.
    """
    if status >= 500:
        return (
            f"{url} answered HTTP {status}: the API, or a proxy before it, is in trouble; "
            "dropd would keep batches and retry: try again later, or ask the provider"
        )
    if status == 404:
        return (
            f"{url} answered HTTP 404: there is no upload API there; check base_url of "
            f"environments.{env.name} and the group_name"
        )
    if with_token and status == 401:
        return (
            f"{url} refused the token from {env.token_url} (HTTP 401); check that token_url "
            f"and base_url of environments.{env.name} are of the same environment"
        )
    if with_token and status == 403:
        return (
            f"{url} answered HTTP 403: client {env.client_id!r} may not upload; ask the "
            "provider to grant it the upload scope"
        )
    return ""


def _timeouts(config: Config) -> tuple[float, float]:
    daemon = config.daemon
    return daemon.connect_timeout_seconds, min(daemon.read_timeout_seconds, CHECK_READ_SECONDS)
