"""requeue: `dropd retry`'s work on the spool, as another user than the daemon's."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from daemon.base.timestamps import utc_now
from daemon.spool.requeue import retry_failed
from daemon.spool.store import Spool

BATCH = "20261123T085810.123456Z-3f9a"
NOBODY = 65534  # stands for the daemon's own user


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give files to another user")
def test_requeue_as_root_leaves_the_batch_to_the_daemons_user(tmp_path: Path) -> None:
    folder = tmp_path / "music"
    failed = folder / "failed" / BATCH
    failed.mkdir(parents=True)
    (folder / ".dropd" / "work").mkdir(parents=True)
    (failed / "users.csv").write_text("user_id\n")
    record = {"batch": BATCH, "step": "upload", "reason": "HTTP 403", "attempts": 1}
    (failed / "error.json").write_text(json.dumps(record))
    for path in (folder / ".dropd", folder / ".dropd" / "work", failed, *failed.iterdir()):
        os.chown(path, NOBODY, NOBODY)

    spool = Spool(folder, "music")
    retry_failed(spool, BATCH, utc_now())

    back = spool.batch_dir(BATCH)
    for path in (back, back / "manifest.json", back / "files", back / "files" / "users.csv"):
        assert (path.stat().st_uid, path.stat().st_gid) == (NOBODY, NOBODY), path
