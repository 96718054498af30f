"""`dropd sandbox`: its help says which client and secret it takes when none is given."""

from __future__ import annotations

import pytest

from daemon.commands.cli import build_parser
from daemon.sandbox.server import DEFAULT_CLIENTS


def test_sandbox_help_gives_the_default_client_and_secret(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sandbox", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    for client, secret in DEFAULT_CLIENTS.items():
        assert f"client id `{client}` with secret `{secret}`" in shown
        assert f"client id {client} with secret {secret}" in shown
