"""`dropd run`: the daemon in the foreground, until SIGTERM (systemd's `Type=notify`)."""

from __future__ import annotations

import argparse

from daemon.runtime import service


def run(args: argparse.Namespace) -> int:
    """Exit 2 on a bad config, 0 after a clean stop."""
    return service.main(args.config)
