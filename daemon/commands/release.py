"""Sending a batch the guard held (`dropd release`): as it is, at the back of the line.

The way of `dropd retry` (spool/requeue.py): staged in a folder the daemon ignores, then renamed
into the spool in one step, and adopted by the running owner:

    1. .dropd/work/.requeue-BATCH/manifest.json   state `claimed`, queued now, `released`
    2. held/BATCH/held.json → .requeue-BATCH/previous-held.json
    3. held/BATCH/          → .requeue-BATCH/files/
    4. .requeue-BATCH/      → .dropd/work/BATCH/

The manifest's `released` (who, when) makes the guard pass this batch alone; the receipt
says `released`. A crash between steps is finished forwards by `requeue.finish_staged`.
"""

from __future__ import annotations

import argparse
import os
import pwd
from datetime import datetime

from daemon.base.errors import RequeueError
from daemon.base.timestamps import iso, utc_now
from daemon.commands.retry import put_back_command
from daemon.spool.manifest import Manifest, Release
from daemon.spool.requeue import (
    filed,
    filed_batch,
    finish_staged_for_command,
    read_record,
    record_name_in,
    requeued,
    sent_batch,
    stage,
)
from daemon.spool.store import Spool

PREVIOUS_RECORD = "previous-held.json"


def run(args: argparse.Namespace) -> int:
    """`dropd release`: 0 when the batch is in line; 1 if it cannot be; 2 on a bad config."""
    group_key, batch_id = args.group, args.batch
    return put_back_command(
        "release",
        args.config,
        group_key,
        lambda spool: release_held(spool, batch_id, utc_now(), releaser()),
        lambda manifest, files: (
            f"batch {batch_id} of group {group_key} is released: it is back in line, at its "
            f"back, with its {files} files as they are, and the guard will not stop it "
            f"(released by {manifest.released.by if manifest.released else None}); the "
            "running dropd sends it"
        ),
    )


def release_held(spool: Spool, batch_id: str, moment: datetime, by: str) -> Manifest:
    """Put `held/BATCH` back in line, at its back, with the guard off for it alone.

    Raises RequeueError if there is no such held batch, or it cannot be moved.
    """
    finish_staged_for_command(spool)
    with filed_batch(spool, "held", batch_id, _refuse_unless_held) as (held, batch):
        record_file = record_name_in(batch, "held")
        record = read_record(batch, record_file)
        manifest = requeued(spool, batch_id, record, moment, Release(by, iso(moment)))
        stage(spool, manifest, held, batch, record_file, PREVIOUS_RECORD, "release")
    return manifest


def _refuse_unless_held(spool: Spool, batch_id: str) -> RequeueError:
    held = spool.folder / "held"
    if spool.exists(batch_id):
        return RequeueError(
            f"batch {batch_id} is not held: it is in line in {spool.work_shown}; the running "
            "dropd sends it"
        )
    sent = sent_batch(spool, batch_id)
    if sent is not None:
        return RequeueError(f"batch {batch_id} is not held: it was sent (see {sent})")
    failed = spool.folder / "failed" / batch_id
    if filed(spool, "failed", batch_id):
        return RequeueError(
            f"batch {batch_id} is not held: it failed (see {failed}/error.json); "
            "`dropd retry` puts a failed batch back in line"
        )
    return RequeueError(
        f"there is no held batch {batch_id} in {held}; `ls {held}` lists the held batches"
    )


def releaser() -> str:
    """Who runs `release`: the login name, and the person behind `sudo` where there is one."""
    try:
        name = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        name = f"uid {os.geteuid()}"
    sudo = os.environ.get("SUDO_USER")
    return f"{sudo} (as {name}, via sudo)" if sudo and sudo != name else name
