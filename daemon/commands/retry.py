"""`dropd retry`: a failed batch back in line, with its files as they are in failed/BATCH/
(a batch failed at validate only once they changed, or with --force); and what `dropd
release` shares with it: finding the group's spool and saying what was put back."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from daemon.base.errors import ConfigError, RequeueError, SpoolError
from daemon.base.timestamps import utc_now
from daemon.config.load import load_config
from daemon.config.lookup import group_named
from daemon.spool.manifest import Manifest
from daemon.spool.requeue import FileChanges, Retried, retry_batch
from daemon.spool.store import Spool


def run(args: argparse.Namespace) -> int:
    """`dropd retry`: 0 when the batch is back in line; 1 if it cannot be (a batch failed at
    validate whose files did not change, unless --force); 2 on a bad config."""
    group_key, batch_id = args.group, args.batch
    retried: list[Retried] = []

    def put_back(spool: Spool) -> Manifest:
        retried.append(retry_batch(spool, batch_id, utc_now(), force=args.force))
        return retried[-1].manifest

    def said(manifest: Manifest, files: int) -> str:
        changes = retried[-1].changes
        return (
            f"batch {batch_id} of group {group_key} is back in line with its {files} "
            f"files {files_said(changes, args.force)} (attempts so far: {manifest.attempts}); "
            "the running dropd sends it"
        )

    return put_back_command("retry", args.config, group_key, put_back, said)


def files_said(changes: FileChanges | None, forced: bool) -> str:
    """How the retried batch's files stand since it failed, in words."""
    if forced:
        return "as they are (--force)"
    if changes is None:
        return "as they were"
    if not changes.known:
        return (
            "as they are now (its error.json does not say how they were, so whether they "
            "changed is not known)"
        )
    said = f"as they are now: changed {', '.join(changes.changed)}"
    if changes.unchanged:
        said += f"; unchanged {', '.join(changes.unchanged)}"
    return said


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

    Raises ConfigError if the config is bad or has no such group, RequeueError if its
    folder cannot be used.
    """
    group = group_named(load_config(config_path), group_key)
    spool = Spool(group.folder, group.key)
    try:
        spool.open()
    except SpoolError as exc:
        raise RequeueError(f"{exc.reason}; fix that, then run the same command again") from exc
    return spool
