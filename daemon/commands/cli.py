"""The `dropd` command line: parses arguments and hands each subcommand to its module."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from daemon import __version__


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", "-c", type=Path, required=True, metavar="F", help="the TOML configuration file"
    )


def build_parser() -> argparse.ArgumentParser:
    """Return the parser for every `dropd` subcommand."""
    parser = argparse.ArgumentParser(prog="dropd", description=__doc__)
    parser.add_argument("--version", action="version", version=f"dropd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the daemon in the foreground")
    _config_arg(run)

    check_config = commands.add_parser("check-config", help="check a configuration file")
    _config_arg(check_config)

    sandbox = commands.add_parser("sandbox", help="a local stand-in of the provider's API")
    sandbox.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (0: any)")
    sandbox.add_argument(
        "--store",
        type=Path,
        default=Path("sandbox-store"),
        help="folder that keeps every accepted upload",
    )
    sandbox.add_argument(
        "--client",
        action="append",
        default=None,
        metavar="ID:SECRET",
        help="a client the token endpoint accepts (repeatable)",
    )
    sandbox.add_argument(
        "--token-lifetime",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="how long an issued token is valid",
    )

    verify = commands.add_parser(
        "verify", help="check each group step by step: config, folder, token, endpoint"
    )
    _config_arg(verify)
    verify.add_argument(
        "groups", nargs="*", metavar="GROUP", help="the groups to check (default: all)"
    )

    status = commands.add_parser("status", help="each group: Valid, Processing or Error")
    _config_arg(status)
    status.add_argument("--json", action="store_true", help="one JSON object, for monitoring")

    retry = commands.add_parser("retry", help="put a failed batch back in line, unchanged")
    _config_arg(retry)
    retry.add_argument("group", metavar="GROUP", help="the group's key in the config")
    retry.add_argument("batch", metavar="BATCH", help="the batch id (its folder under failed/)")

    release = commands.add_parser("release", help="send a batch the guard held, as it is")
    _config_arg(release)
    release.add_argument("group", metavar="GROUP", help="the group's key in the config")
    release.add_argument("batch", metavar="BATCH", help="the batch id (its folder under held/)")

    check = commands.add_parser(
        "check", help="a dry run: intake, validation and the guard on files; moves nothing"
    )
    check.add_argument(
        "--config",
        "-c",
        type=Path,
        default=None,
        metavar="F",
        help="the TOML configuration file (without it: the default settings)",
    )
    check.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="files or folders")
    check.add_argument(
        "--group",
        default=None,
        metavar="G",
        help="use group G's settings (default: the group whose folder holds PATH, else the "
        "defaults)",
    )

    demo = commands.add_parser("demo", help="a first run: sandbox, daemon and sample files")
    demo.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="where to put the demo (default: a new temporary folder)",
    )
    return parser


# Commands that run until stopped: their stdout is the log, and a closed one is theirs to
# handle, not a short command's to end quietly.
_LONG_RUNNING = frozenset({"run", "sandbox", "demo"})
# What a shell shows for a program killed by SIGPIPE (128 + 13), as `ls | head` would.
EXIT_PIPE_CLOSED = 141


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `dropd` console command; returns the exit code."""
    # --help and --version need nothing here: argparse itself ignores a closed stdout.
    args = build_parser().parse_args(argv)
    if args.command in _LONG_RUNNING:
        return _run_long(args)
    try:
        code = _run_short(args)
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


def _run_long(args: argparse.Namespace) -> int:
    if args.command == "sandbox":
        from daemon.sandbox import server as sandbox

        return sandbox.main(args)
    if args.command == "run":
        from daemon.runtime import service

        return service.main(args.config)
    from daemon.commands import demo

    return demo.main(args.dir)


def _run_short(args: argparse.Namespace) -> int:
    if args.command == "check-config":
        from daemon.config import model as config

        return config.check_config_command(args.config)
    if args.command == "verify":
        from daemon.commands import verify

        return verify.verify_command(args.config, args.groups)
    if args.command == "status":
        from daemon.commands import status as statusview

        return statusview.status_command(args.config, args.json)
    if args.command == "retry":
        from daemon.spool import requeue

        return requeue.retry_command(args.config, args.group, args.batch)
    if args.command == "release":
        from daemon.commands import release

        return release.release_command(args.config, args.group, args.batch)
    if args.command == "check":
        from daemon.commands import check as dryrun

        return dryrun.check_command(args.config, args.paths, args.group)
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
