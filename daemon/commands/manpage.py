"""The man page `dropd(1)`, made from the command line's parser and its table of commands, so
that it says what `--help` says. `docs/dropd.1` is its copy in the repository, installed with
the docs; a test fails when it drifts.

Regenerate it with `python -m daemon.commands.manpage` (writes docs/dropd.1), or print it
elsewhere with `python -m daemon.commands.manpage -`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from argparse_manpage.manpage import Manpage  # type: ignore[import-untyped]

from daemon.commands.cli import ABOUT, COMMANDS, ConfigUse, build_parser
from daemon.config.load import DEFAULT_CONFIG_PATH
from daemon.config.lookup import CONFIG_VARIABLE

MANPAGE = Path(__file__).resolve().parents[2] / "docs" / "dropd.1"


def render() -> str:
    """The man page, as roff text."""
    parser = build_parser()
    parser.epilog = None  # `dropd --help`'s last lines: EXIT STATUS and ENVIRONMENT say more
    page = Manpage(
        parser,
        _data={
            "project_name": "dropd",
            "manual_title": "dropd manual",
            "description": "upload the CSV files dropped in folders to the provisioning API",
            "date": "-",
        },
        format="single-commands-section",
    )
    page.date = ""  # no date: the page changes only when the command line does
    page.add_section("exit status", "=", _exit_status())
    page.add_section("examples", "=", _examples())
    page.add_section("environment", "=", _environment())
    page.add_section("files", "=", _files())
    page.add_section("see also", "=", "systemctl(1), journalctl(1), systemd.exec(5)")
    text = str(page)
    return text.replace(_roff(ABOUT), _roff(ABOUT).replace("\n", " "))


def _exit_status() -> str:
    lines = [
        "Across commands, 0 means all is well, 1 that the command ran and found something a "
        "person should look at, 2 that it could not start as asked (a bad config, an unknown "
        "group, a wrong argument). A short command whose reader goes away (dropd list | head) "
        "ends with 141."
    ]
    for command in COMMANDS:
        lines += [".TP", f".B dropd {_roff(command.name)}"]
        lines += [
            f"{'' if i == 0 else '.br' + chr(10)}{code}: {_roff(meaning)}"
            for i, (code, meaning) in enumerate(command.exits)
        ]
    return _join(lines)


def _examples() -> str:
    lines: list[str] = []
    for command in COMMANDS:
        lines += [".TP", f".B dropd {_roff(command.name)}"]
        lines.append("\n.br\n".join(_roff(example) for example in command.examples))
    return _join(lines)


def _environment() -> str:
    return _join(
        [
            ".TP",
            f".B {CONFIG_VARIABLE}",
            "The config file of every command that reads one, when --config is not given "
            f"(default: {_roff(str(DEFAULT_CONFIG_PATH))}).",
        ]
    )


def _files() -> str:
    optional = [c.name for c in COMMANDS if c.config is ConfigUse.OPTIONAL]
    return _join(
        [
            ".TP",
            f".B {_roff(str(DEFAULT_CONFIG_PATH))}",
            "The config file when neither --config nor "
            f"${CONFIG_VARIABLE} names one; without it, {_roff(', '.join(optional))} uses "
            "the default settings.",
        ]
    )


def _join(lines: Sequence[str]) -> str:
    return "\n".join(lines)


def _roff(text: str) -> str:
    """`text` safe in a roff line: backslashes and hyphens escaped."""
    return text.replace("\\", "\\\\").replace("-", "\\-")


def main(argv: Sequence[str] | None = None) -> int:
    """Write the man page to docs/dropd.1, or to stdout with `-`."""
    args = sys.argv[1:] if argv is None else list(argv)
    text = render()
    if args == ["-"]:
        sys.stdout.write(text)
        return 0
    target = Path(args[0]) if args else MANPAGE
    target.write_text(text, encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
