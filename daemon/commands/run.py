"""`dropd run`: the daemon in the foreground, until SIGTERM (systemd's `Type=notify`); with
`--once`, until what the folders held is sent (cron, a container's job, a first trial)."""

from __future__ import annotations

import argparse

from daemon.runtime import service


def run(args: argparse.Namespace) -> int:
    """Exit 2 on a bad config, 0 after a clean stop; `--once`: 0 when every batch it took was
    sent, 1 when one failed, was held or was left."""
    return service.main(args.config, once=args.once)
