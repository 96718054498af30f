"""`dropd retry`: a failed batch back in line, its files unchanged; and what `dropd release`
shares with it: finding the group's spool and saying what was put back."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from daemon.base.errors import ConfigError, RequeueError, SpoolError
from daemon.base.names import quoted
from daemon.base.timestamps import utc_now
from daemon.config.load import load_config
from daemon.spool.manifest import Manifest
from daemon.spool.requeue import retry_failed
from daemon.spool.store import Spool


def run(args: argparse.Namespace) -> int:
    """`dropd retry`: 0 when the batch is back in line; 1 if it cannot be; 2 on a bad config."""
    group_key, batch_id = args.group, args.batch
    return put_back_command(
        "retry",
        args.config,
        group_key,
        lambda spool: retry_failed(spool, batch_id, utc_now()),
        lambda manifest, files: (
            f"batch {batch_id} of group {group_key} is back in line with its {files} files "
            f"unchanged (attempts so far: {manifest.attempts}); the running dropd sends it"
        ),
    )


def put_back_command(
    command: str,
    config_path: Path,
    group_key: str,
    put_back: Callable[[Spool], Manifest],
    said: Callable[[Manifest, int], str],
) -> int:
    """`dropd retry` or `dropd release`: `put_back` the batch into the group's spool, then
    print `said` of it and its file count. 0 when it is in line; 1 if it cannot be; 2 on a
    bad config."""
    try:
        spool = group_spool(config_path, group_key)
        manifest = put_back(spool)
    except ConfigError as exc:
        print("\n".join(exc.problems), file=sys.stderr)
        return 2
    except RequeueError as exc:
        print(f"dropd {command}: {exc}", file=sys.stderr)
        return 1
    print(said(manifest, spool.file_count(manifest.batch)))
    return 0


def group_spool(config_path: Path, group_key: str) -> Spool:
    """The spool of group `group_key` of the config at `config_path`.

    Raises ConfigError if the config is bad, RequeueError if it has no such group.
    """
    config = load_config(config_path)
    group = config.groups.get(group_key)
    if group is None:
        known = ", ".join(sorted(config.groups)) or "none"
        raise RequeueError(
            f"{config_path}: there is no group {quoted(group_key)} (groups: {known})"
        )
    spool = Spool(group.folder, group.key)
    try:
        spool.open()
    except SpoolError as exc:
        raise RequeueError(f"{exc.reason}; fix that, then run the same command again") from exc
    return spool
