"""manpage: docs/dropd.1 is what the parser makes; regenerate with
`python -m daemon.commands.manpage` when this fails."""

from __future__ import annotations

from daemon.commands import cli
from daemon.commands.manpage import MANPAGE, render


def test_the_man_page_in_docs_is_the_one_the_parser_makes() -> None:
    assert MANPAGE.read_text(encoding="utf-8") == render(), (
        "docs/dropd.1 is stale: run `python -m daemon.commands.manpage`"
    )


def test_the_man_page_has_every_command_its_exit_codes_and_the_config_variable() -> None:
    page = render()
    for command in cli.COMMANDS:
        name = command.name.replace("-", "\\-")
        assert f".SS \\fBdropd {name}\\fR" in page
        assert f".B dropd {name}\n0: " in page
    assert ".SH ENVIRONMENT\n.TP\n.B DROPD_CONFIG" in page
