"""The `dropd` command line: a table of subcommands, each run by its module in this package.

The table is the one source of each command's help, exit codes and examples: `dropd --help`,
`dropd COMMAND --help` and the man page (`python -m daemon.commands.manpage`) are made from it.
"""

from __future__ import annotations

import argparse
import enum
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from daemon import __version__
from daemon.config.lookup import ConfigSource, choose_config, is_missing

ABOUT = """\
dropd takes the CSV files that exports and people drop into a folder per group, checks them
as the provider's server would, bundles each batch into one ZIP and uploads it to the Canvas
and Expand Provisioning API. Each batch ends under the group's folder in sent/ (with
receipt.json), failed/ (with error.json: the step and the reason) or held/ (the guard
stopped an export that deletes too much; held.json). systemd runs `dropd run`; the other
commands check the config, look at the daemon and its batches, and step in."""

CONFIG_RULE = "The config file: --config F (-c F), else $DROPD_CONFIG, else /etc/dropd/dropd.toml."

ABOUT_EPILOG = f"""\
{CONFIG_RULE}
Exit codes: 0 all is well; 1 it ran and found something a person should look at; 2 it could
not start as asked (a bad config, an unknown group, a wrong argument); 141 a short command
whose reader went away (`dropd list | head`).
`dropd COMMAND --help` says what a command does, its exit codes and examples; `man dropd`
has them all."""


class ConfigUse(enum.Enum):
    """Whether a command reads the config file."""

    NONE = "none"
    REQUIRED = "required"  # it must be there
    # `dropd check`: with no --config and no $DROPD_CONFIG it uses the default file when there
    # is one, else the default settings, so it works on a machine dropd is not set up on.
    OPTIONAL = "optional"


@dataclass(frozen=True, slots=True)
class Command:
    """One `dropd` subcommand: its help, its arguments, its exit codes, and its module.

    The module (`daemon.commands.<module>`, whose `run(args)` returns the exit code) is
    imported only when its command runs: `dropd status` need not load the daemon's upload
    machinery, nor `dropd run` the sandbox.
    """

    name: str
    help: str  # its line in `dropd --help`
    arguments: Callable[[argparse.ArgumentParser], None]
    module: str
    description: str  # what it does, atop `dropd NAME --help`
    exits: tuple[tuple[int, str], ...]  # each exit code and what it means
    examples: tuple[str, ...]
    config: ConfigUse = ConfigUse.REQUIRED
    # Runs until stopped: its stdout is the log, and a closed one is its own to handle, not
    # a short command's to end quietly.
    long_running: bool = False

    def epilog(self) -> str:
        """The end of `dropd NAME --help`: the config rule, exit codes, examples."""
        lines = [CONFIG_RULE, ""] if self.config is not ConfigUse.NONE else []
        lines.append("exit codes:")
        lines += [f"  {code}  {meaning}" for code, meaning in self.exits]
        lines += ["", "examples:" if len(self.examples) > 1 else "example:"]
        lines += [f"  {example}" for example in self.examples]
        return "\n".join(lines)


def _config(
    parser: argparse.ArgumentParser,
    default: str = "$DROPD_CONFIG, else /etc/dropd/dropd.toml",
) -> None:
    parser.add_argument(
        "--config",
        "-c",
        type=Path,
        default=None,
        metavar="F",
        help=f"the TOML configuration file (default: {default})",
    )


def _run(parser: argparse.ArgumentParser) -> None:
    _config(parser)
    parser.add_argument(
        "--once",
        action="store_true",
        help="send what the folders hold (once settled, when its batch closes) and exit: "
        "for cron, a container's job or a first trial",
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
        help="a client the token endpoint accepts (repeatable); without any, it accepts "
        "client id dropd-demo with secret demo-secret",
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
    parser.add_argument(
        "--send-test",
        action="store_true",
        help="also send a test message through each of [notify]'s URLs",
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


def _retry(parser: argparse.ArgumentParser) -> None:
    _batch_in("failed")(parser)
    parser.add_argument(
        "--force",
        action="store_true",
        help="retry a batch failed at validate even though its files did not change since",
    )


def _check(parser: argparse.ArgumentParser) -> None:
    _config(
        parser,
        "$DROPD_CONFIG, else /etc/dropd/dropd.toml when it exists, else the default settings",
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="files or folders")
    parser.add_argument(
        "--group",
        default=None,
        metavar="G",
        help="use group G's settings (default: the group whose folder holds PATH, else the "
        "defaults)",
    )


def _list(parser: argparse.ArgumentParser) -> None:
    _config(parser)
    parser.add_argument(
        "group", nargs="?", default=None, metavar="GROUP", help="one group (default: all)"
    )
    parser.add_argument(
        "--state",
        choices=("waiting", "sent", "failed", "held"),
        default=None,
        help="only the batches in this state",
    )
    parser.add_argument(
        "--json", action="store_true", help="a JSON array, one object a batch, for scripts"
    )


def _show(parser: argparse.ArgumentParser) -> None:
    _config(parser)
    parser.add_argument("group", metavar="GROUP", help="the group's key in the config")
    parser.add_argument("batch", metavar="BATCH", help="the batch id (`dropd list` shows them)")
    parser.add_argument(
        "--json",
        action="store_true",
        help="the record as stored (receipt, error or held record; a waiting batch's manifest)",
    )


def _demo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="where to put the demo (default: a new temporary folder)",
    )


COMMANDS = (
    Command(
        "run",
        "run the daemon in the foreground",
        _run,
        "run",
        "Run the daemon in the foreground until SIGTERM or SIGINT: watch every group's folder,\n"
        "send each batch, file it under sent/, failed/ or held/. systemd runs it (Type=notify;\n"
        "SIGHUP reloads the config). Its log is one JSON object a line on stdout; a config it\n"
        "cannot start with is also said on stderr. With --once it takes what the folders and\n"
        "their spools hold, sends it, and exits once every batch it took is sent, failed or\n"
        "held (an upload the server asks to retry keeps it running, up to\n"
        "give_up_after_seconds); its last line is the event once_finished.",
        (
            (0, "stopped cleanly (SIGTERM or SIGINT); --once: every batch it took was sent"),
            (1, "--once: a batch failed, was held or was left, or a group needs a person"),
            (2, "a bad config, a state_dir that cannot be made, or another dropd on it"),
        ),
        ("dropd run", "dropd run -c /etc/dropd/test.toml", "dropd run --once"),
        long_running=True,
    ),
    Command(
        "check-config",
        "check a configuration file",
        _config,
        "check_config",
        "Read the config file and check it, and the files and folders it names: every\n"
        "problem at once, as `key.path: why`. Nothing is changed and nothing is sent.",
        ((0, "valid: `F: ok (...)`"), (2, "invalid: every problem on stderr")),
        ("dropd check-config", "dropd check-config -c /etc/dropd/new.toml"),
    ),
    Command(
        "sandbox",
        "a local stand-in of the provider's API",
        _sandbox,
        "sandbox",
        "Serve a stand-in of the provider's token and upload endpoints on 127.0.0.1, reading\n"
        "uploads as the real server does and keeping each one in --store. For a first trial\n"
        "and for tests: point an environment's token_url and base_url at it. Unless --client\n"
        "says otherwise, the token endpoint accepts client id `dropd-demo` with secret\n"
        "`demo-secret` (a stand-in's, never a real one).",
        (
            (0, "stopped by SIGINT or SIGTERM"),
            (1, "it cannot serve on the port or use the store asked for"),
            (2, "a --client that is not ID:SECRET, or a bad --max-upload-bytes"),
        ),
        ("dropd sandbox --port 8765 --store /tmp/sandbox-store",),
        config=ConfigUse.NONE,
        long_running=True,
    ),
    Command(
        "verify",
        "check each group step by step: config, folder, token, endpoint",
        _verify,
        "verify",
        "Check each group (or those named) step by step, like the provider's Verify Account\n"
        "button: config (the secret, the ca_bundle), folder (writable, sent/ failed/ held/\n"
        "on its file system), token (one is fetched, and kept nowhere), endpoint (answers a\n"
        "GET; nothing is uploaded). A line per group and step, then one for [notify]'s\n"
        "URLs (read and taken by apprise; with --send-test, a test message through each).",
        (
            (0, "every step of every group checked is ok"),
            (1, "a step failed, or a test message did not go"),
            (2, "a bad config, or a group the config does not have"),
        ),
        ("dropd verify", "dropd verify music", "dropd verify --send-test"),
    ),
    Command(
        "status",
        "each group: Valid, Processing or Error",
        _status,
        "status",
        "Show whether dropd runs, and each group of the config: Valid, Processing or Error\n"
        "with the step and reason, the last upload, files waiting, batches failed. Read from\n"
        "the status file the running dropd keeps in state_dir.",
        (
            (0, "dropd runs and every group is Valid or Processing"),
            (1, "a person should look: a group in Error, dropd not running, no status yet"),
            (2, "a bad config"),
        ),
        ("dropd status", "dropd status --json"),
    ),
    Command(
        "retry",
        "put a failed batch back in line",
        _retry,
        "retry",
        "Put a failed batch (failed/BATCH/) back in line, with its files as they are there\n"
        "now: fix the files inside failed/BATCH/, then retry it. The running dropd sends it.\n"
        "A batch failed at validate whose files did not change since is refused (it would\n"
        "fail again) unless --force; the answer says which files changed.",
        (
            (0, "the batch is back in line"),
            (
                1,
                "there is no such failed batch, or it cannot be retried, or it failed at "
                "validate and its files did not change (the reason on stderr)",
            ),
            (2, "a bad config, or a group the config does not have"),
        ),
        (
            "dropd retry music 20261123T085810.123456Z-3f9a",
            "dropd retry --force music 20261123T085810.123456Z-3f9a",
        ),
    ),
    Command(
        "release",
        "send a batch the guard held, as it is",
        _batch_in("held"),
        "release",
        "Send a batch the guard held (held/BATCH/) as it is: it goes back in line, at its\n"
        "back, and the guard lets it pass. The running dropd sends it.",
        (
            (0, "the batch is back in line"),
            (1, "there is no such held batch (the reason on stderr)"),
            (2, "a bad config, or a group the config does not have"),
        ),
        ("dropd release music 20261123T085810.123456Z-3f9a",),
    ),
    Command(
        "list",
        "the batches of a group or all: waiting, sent, failed, held",
        _list,
        "listing",
        "List the batches of one group or of every group, newest first: id, state (waiting,\n"
        "sent, failed, held), files, when (UTC), and the reason (failed: step and reason;\n"
        "held: the guard's reason). `dropd show` tells the rest of one.",
        (
            (0, "listed (none at all included)"),
            (1, "a group's folder cannot be read (the others are listed)"),
            (2, "a bad config, or a group the config does not have"),
        ),
        ("dropd list", "dropd list music --state failed", "dropd list --json"),
    ),
    Command(
        "show",
        "one batch: its receipt, error or held record, readable",
        _show,
        "show",
        "Show one batch, wherever it is: its files, the step and reason, the server's answer\n"
        "and its fileErrors, when, and the command to run next. --json prints the record as\n"
        "stored.",
        (
            (0, "the batch was found"),
            (1, "the group has no such batch"),
            (2, "a bad config, or a group the config does not have"),
        ),
        (
            "dropd show music 20261123T085810.123456Z-3f9a",
            "dropd show --json music 20261123T085810.123456Z-3f9a",
        ),
    ),
    Command(
        "check",
        "a dry run: intake, validation and the guard on files; moves nothing",
        _check,
        "check",
        "A dry run on files or a folder: what intake, validation and the guard would do with\n"
        "them, with the settings of the group whose folder holds them (or --group G, else the\n"
        "defaults). Nothing is moved or sent. Without --config and $DROPD_CONFIG it reads\n"
        "/etc/dropd/dropd.toml when it exists, else uses the default settings.",
        (
            (0, "every batch would be sent"),
            (1, "a batch would fail or be held, a file fail alone, or nothing would be sent"),
            (2, "a bad config, an unknown group, a path that is not there"),
        ),
        ("dropd check /srv/drop/music", "dropd check --group music ~/export/*.csv"),
        config=ConfigUse.OPTIONAL,
    ),
    Command(
        "demo",
        "a first run: sandbox, daemon and sample files",
        _demo,
        "demo",
        "A first run for a newcomer: a sandbox, a daemon and a drop folder with sample files,\n"
        "showing the whole way from drop to sent/.",
        (
            (0, "the sample files reached sent/"),
            (1, "the daemon did not start, or the files did not reach sent/ in time"),
        ),
        ("dropd demo", "dropd demo --dir /tmp/dropd-demo"),
        config=ConfigUse.NONE,
        long_running=True,
    ),
)


def build_parser() -> argparse.ArgumentParser:
    """Return the parser for every `dropd` subcommand."""
    parser = argparse.ArgumentParser(
        prog="dropd",
        description=ABOUT,
        epilog=ABOUT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"dropd {__version__}")
    subparsers = parser.add_subparsers(
        title="commands", dest="command", required=True, metavar="COMMAND"
    )
    for command in COMMANDS:
        command.arguments(
            subparsers.add_parser(
                command.name,
                help=command.help,
                description=command.description,
                epilog=command.epilog(),
                formatter_class=argparse.RawDescriptionHelpFormatter,
            )
        )
    return parser


# What a shell shows for a program killed by SIGPIPE (128 + 13), as `ls | head` would.
EXIT_PIPE_CLOSED = 141


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `dropd` console command; returns the exit code."""
    # --help and --version need nothing here: argparse itself ignores a closed stdout.
    args = build_parser().parse_args(argv)
    command = next(c for c in COMMANDS if c.name == args.command)
    if command.config is not ConfigUse.NONE and not _choose_config(args, command.config):
        return 2
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


def _choose_config(args: argparse.Namespace, use: ConfigUse) -> bool:
    """Set `args.config` to the file the command reads (None: `dropd check`'s defaults).

    False, having said which file was missing and how it was chosen, when it is not there.
    """
    choice = choose_config(args.config, os.environ)
    if not is_missing(choice.path):
        args.config = choice.path
        return True
    if use is ConfigUse.OPTIONAL and choice.source is ConfigSource.DEFAULT:
        args.config = None
        return True
    print(choice.missing(), file=sys.stderr)
    return False


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
