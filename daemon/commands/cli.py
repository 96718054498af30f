"""The `dropd` command line: a table of subcommands, each run by its module in this package."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from daemon import __version__


@dataclass(frozen=True, slots=True)
class Command:
    """One `dropd` subcommand: its line of help, its arguments, and its module.

    The module (`daemon.commands.<module>`, whose `run(args)` returns the exit code) is
    imported only when its command runs: `dropd status` need not load the daemon's upload
    machinery, nor `dropd run` the sandbox.
    """

    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    module: str
    # Runs until stopped: its stdout is the log, and a closed one is its own to handle, not
    # a short command's to end quietly.
    long_running: bool = False


def _config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", "-c", type=Path, required=True, metavar="F", help="the TOML configuration file"
    )


def _sandbox(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (0: any)")
    parser.add_argument(
        "--store",
        type=Path,
        default=Path("sandbox-store"),
        help="folder that keeps every accepted upload",
    )
    parser.add_argument(
        "--client",
        action="append",
        default=None,
        metavar="ID:SECRET",
        help="a client the token endpoint accepts (repeatable)",
    )
    parser.add_argument(
        "--token-lifetime",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="how long an issued token is valid",
    )
    parser.add_argument(
        "--max-upload-bytes",
        type=_positive_bytes,
        default=None,
        metavar="N",
        help="answer an upload whose request body is over N bytes with 413 and Spring's error "
        "JSON, as the server's framework does over its multipart limit (Spring Boot's "
        "defaults: 1 MB a file, 10 MB a request); default: no limit",
    )


def _positive_bytes(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of bytes of 1 or more")
    return value


def _verify(parser: argparse.ArgumentParser) -> None:
    _config(parser)
    parser.add_argument(
        "groups", nargs="*", metavar="GROUP", help="the groups to check (default: all)"
    )


def _status(parser: argparse.ArgumentParser) -> None:
    _config(parser)
    parser.add_argument("--json", action="store_true", help="one JSON object, for monitoring")


def _batch_in(folder: str) -> Callable[[argparse.ArgumentParser], None]:
    def arguments(parser: argparse.ArgumentParser) -> None:
        _config(parser)
        parser.add_argument("group", metavar="GROUP", help="the group's key in the config")
        parser.add_argument(
            "batch", metavar="BATCH", help=f"the batch id (its folder under {folder}/)"
        )

    return arguments


def _check(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        "-c",
        type=Path,
        default=None,
        metavar="F",
        help="the TOML configuration file (without it: the default settings)",
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="files or folders")
    parser.add_argument(
        "--group",
        default=None,
        metavar="G",
        help="use group G's settings (default: the group whose folder holds PATH, else the "
        "defaults)",
    )


def _demo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="where to put the demo (default: a new temporary folder)",
    )


COMMANDS = (
    Command("run", "run the daemon in the foreground", _config, "run", long_running=True),
    Command("check-config", "check a configuration file", _config, "check_config"),
    Command(
        "sandbox",
        "a local stand-in of the provider's API",
        _sandbox,
        "sandbox",
        long_running=True,
    ),
    Command(
        "verify",
        "check each group step by step: config, folder, token, endpoint",
        _verify,
        "verify",
    ),
    Command("status", "each group: Valid, Processing or Error", _status, "status"),
    Command("retry", "put a failed batch back in line, unchanged", _batch_in("failed"), "retry"),
    Command("release", "send a batch the guard held, as it is", _batch_in("held"), "release"),
    Command(
        "check",
        "a dry run: intake, validation and the guard on files; moves nothing",
        _check,
        "check",
    ),
    Command(
        "demo",
        "a first run: sandbox, daemon and sample files",
        _demo,
        "demo",
        long_running=True,
    ),
)


def build_parser() -> argparse.ArgumentParser:
    """Return the parser for every `dropd` subcommand."""
    parser = argparse.ArgumentParser(prog="dropd", description=__doc__)
    parser.add_argument("--version", action="version", version=f"dropd {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.arguments(subparsers.add_parser(command.name, help=command.help))
    return parser


# What a shell shows for a program killed by SIGPIPE (128 + 13), as `ls | head` would.
EXIT_PIPE_CLOSED = 141


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `dropd` console command; returns the exit code."""
    # --help and --version need nothing here: argparse itself ignores a closed stdout.
    args = build_parser().parse_args(argv)
    command = next(c for c in COMMANDS if c.name == args.command)
    run: Callable[[argparse.Namespace], int] = importlib.import_module(
        f"daemon.commands.{command.module}"
    ).run
    if command.long_running:
        return run(args)
    try:
        code = run(args)
        sys.stdout.flush()  # here, not at exit: a closed pipe must show inside this `try`
    except BrokenPipeError:
        return _pipe_closed()
    return code


def _pipe_closed() -> int:
    """End a short command whose stdout was closed (`dropd status | head -1`): the reader is
    gone, so the rest of the output has no one to read it.

    It ends quietly with what a shell shows for a command killed by SIGPIPE, not by putting
    back SIGPIPE's default action: `dropd verify` talks HTTP, and a server that resets the
    connection would then kill it without a word instead of raising the error it reports.
    stdout is pointed at /dev/null, so the flush at exit of what is still buffered succeeds
    instead of printing "Exception ignored ... BrokenPipeError".
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_PIPE_CLOSED


if __name__ == "__main__":
    sys.exit(main())
