"""`dropd sandbox`: the local stand-in of the provider's API, until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse

from daemon.sandbox import server


def run(args: argparse.Namespace) -> int:
    """Exit 2 on a bad `--client`, 1 if it cannot serve, 0 after a stop."""
    return server.main(args)
