"""`dropd check-config`: a configuration checked, every problem at once."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from daemon.base.errors import ConfigError
from daemon.config.load import load_config


def run(args: argparse.Namespace) -> int:
    """`dropd check-config`, as the command line asked for it."""
    return check_config_command(args.config)


def check_config_command(path: Path) -> int:
    """0 and one line on stdout, or 2 and every problem on stderr."""
    try:
        config = load_config(path, check_files=True)
    except ConfigError as exc:
        return _report(exc.problems)
    environments = _count(len(config.environments), "environment")
    print(f"{path}: ok ({environments}, {_count(len(config.groups), 'group')})")
    return 0


def _report(problems: list[str]) -> int:
    for problem in problems:
        print(problem, file=sys.stderr)
    return 2


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"
