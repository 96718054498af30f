"""`dropd verify`'s parts: folder checks, token and endpoint steps, the command's refusals."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.commands.verify import (
    Check,
    CheckResult,
    endpoint_problem,
    environment_access,
    reach_endpoint,
    verify_command,
    verify_group,
)
from daemon.config.model import (
    Config,
    DaemonSettings,
    Environment,
    Group,
    SecretKind,
    SecretSource,
)
from daemon.sandbox.server import Sandbox

CLIENT, SECRET = "unit-a", "secret-a-1234"
TIMEOUTS = (2.0, 5.0)


@pytest.fixture(autouse=True)
def _restore_oauthlib_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    # TokenSource sets OAUTHLIB_INSECURE_TRANSPORT for http:// loopback URLs; undo it after.
    monkeypatch.delenv("OAUTHLIB_INSECURE_TRANSPORT", raising=False)


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    with Sandbox(tmp_path / "store", clients={CLIENT: SECRET}) as running:
        yield running


def environment(url: str, secret_file: Path, ca_bundle: Path | None = None) -> Environment:
    return Environment(
        name="test",
        token_url=f"{url}/oauth/token",
        base_url=url,
        client_id=CLIENT,
        secret=SecretSource(SecretKind.FILE, str(secret_file)),
        ca_bundle=ca_bundle,
    )


def secret_file(tmp_path: Path, secret: str = SECRET) -> Path:
    path = tmp_path / "test.secret"
    path.write_text(secret + "\n")
    path.chmod(0o600)
    return path


def config_for(tmp_path: Path, env: Environment) -> Config:
    folder = tmp_path / "drop"
    folder.mkdir(exist_ok=True)
    group = Group("music", env.name, folder, "music", "Music")
    daemon = DaemonSettings(state_dir=tmp_path / "state")
    return Config(tmp_path / "dropd.toml", daemon, {env.name: env}, {"music": group})


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- steps -----------------------------------------------------------------------------------


def test_step_result_text() -> None:
    assert CheckResult(Check.TOKEN).text() == "ok"
    assert CheckResult(Check.TOKEN, "no").text() == "failed: no"
    assert CheckResult(Check.TOKEN, skipped="why").text() == "skipped: why"
    assert not CheckResult(Check.TOKEN, skipped="why").ok


@pytest.mark.parametrize(
    ("status", "with_token", "trouble"),
    [
        (200, True, ""),
        (404, True, "no upload API there"),
        (405, True, ""),
        (401, False, ""),
        (401, True, "refused the token"),
        (403, True, "may not upload"),
        (503, True, "HTTP 503"),
        (502, False, "HTTP 502"),
    ],
)
def test_endpoint_problem_by_answer(status: int, with_token: bool, trouble: str) -> None:
    env = environment("https://api.example.edu", Path("/s"))
    problem = endpoint_problem(status, with_token, "https://api.example.edu/rest/upload/m/zip", env)
    assert (trouble in problem) if trouble else problem == ""


def test_environment_access_fetches_a_token_and_keeps_it_nowhere(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    env = environment(sandbox.url, secret_file(tmp_path))
    config = config_for(tmp_path, env)
    got = environment_access(config, env)
    assert got.problem == "" and got.token_problem == "" and got.token
    assert not (tmp_path / "state").exists(), "no token cache, no state_dir"
    results = verify_group(config, config.groups["music"], {"test": got})
    assert [r.text() for r in results] == ["ok"] * 4


def test_environment_access_a_wrong_secret_is_refused(tmp_path: Path, sandbox: Sandbox) -> None:
    env = environment(sandbox.url, secret_file(tmp_path, "wrong"))
    got = environment_access(config_for(tmp_path, env), env)
    assert not got.token
    assert "rejected client 'unit-a'" in got.token_problem
    assert "check client_id and the secret" in got.token_problem


def test_environment_access_an_unreadable_secret_fails_the_config_step(tmp_path: Path) -> None:
    env = environment("http://127.0.0.1:9", tmp_path / "missing.secret")
    config = config_for(tmp_path, env)
    results = verify_group(config, config.groups["music"], {})
    assert results[0].problem.startswith("environments.test: client_secret_file: cannot read")
    assert [r.text() for r in results[2:]] == ["skipped: the config step failed"] * 2


def test_environment_access_a_ca_bundle_that_is_no_pem(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not a certificate")
    env = environment("https://api.example.edu", secret_file(tmp_path), ca_bundle=bundle)
    got = environment_access(config_for(tmp_path, env), env)
    assert got.problem.startswith(f"environments.test.ca_bundle: {bundle} holds no CA")


def test_reach_endpoint_nothing_listening(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    env = environment(url, tmp_path / "s")
    problem = reach_endpoint(f"{url}/rest/upload/music/zip", "", env, TIMEOUTS)
    assert "cannot be reached: ConnectionError; check base_url" in problem


def test_reach_endpoint_any_answer_is_reachable_and_nothing_is_uploaded(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    env = environment(sandbox.url, tmp_path / "s")
    assert reach_endpoint(f"{sandbox.url}/rest/upload/music/zip", "", env, TIMEOUTS) == ""
    assert sandbox.uploads() == []


# -- the command -----------------------------------------------------------------------------


def write_config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "dropd.toml"
    path.write_text(body)
    return path


def test_verify_command_an_unknown_group_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "drop").mkdir()
    config = write_config(
        tmp_path,
        '[environments.test]\ntoken_url = "http://127.0.0.1:9/t"\nbase_url = "http://127.0.0.1:9"\n'
        'client_id = "a"\nclient_secret_env = "S"\n'
        f'[groups.music]\nenvironment = "test"\nfolder = "{tmp_path / "drop"}"\n',
    )
    assert verify_command(config, ["music", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert "there is no group 'nosuch' (groups: music)" in err


def test_verify_command_a_bad_config_exits_2_with_every_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, "[daemon]\nsettle_seconds = -1\nbogus = 1\n")
    assert verify_command(config, []) == 2
    err = capsys.readouterr().err.splitlines()
    assert any(line.startswith("daemon.settle_seconds:") for line in err)
    assert any(line.startswith("daemon.bogus: unknown key") for line in err)
