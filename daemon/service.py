"""`dropd run`, the process: read the config, set up logging, hand signals to the scheduler's
queue, run the scheduler until it stops, and exit with what systemd should see."""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
from pathlib import Path
from types import FrameType

import structlog

from daemon import log as logsetup
from daemon.config import load_config
from daemon.errors import ConfigError
from daemon.scheduler import Scheduler, Signal

log = structlog.get_logger()


def main(config_path: Path) -> int:
    """`dropd run`: exit 2 on a bad config, 0 after a clean stop."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        logsetup.configure()
        for problem in exc.problems:
            log.error("config_invalid", problem=problem)
        return 2
    logsetup.configure(config.daemon.log_format)
    faulthandler.enable()
    try:
        config.daemon.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        log.error(
            "config_invalid",
            problem=f"daemon.state_dir: {config.daemon.state_dir} "
            f"cannot be created ({exc.strerror}); create it or fix the path",
        )
        return 2
    scheduler = Scheduler(config)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        scheduler.inbox.put(Signal(signum))  # SimpleQueue.put is safe in a signal handler

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, on_signal)
    log.info("daemon_starting", config=str(config_path), groups=len(config.groups))
    scheduler.start()
    scheduler.run()
    if scheduler.in_flight():
        # The pool's threads would keep the process alive until the upload ends; the spool
        # has the batch, and the next start sends it again (its receipt will say so).
        log.warning("upload_left_to_recovery", batches=scheduler.in_flight())
        logging.shutdown()
        os._exit(0)
    return 0
