"""`dropd run`, the process: read the config, set up logging, take the state_dir's lock, raise
the open-file limit, hand signals to the scheduler's queue, run the scheduler until it stops,
and exit with what systemd should see."""

from __future__ import annotations

import errno
import faulthandler
import logging
import os
import resource
import signal
import sys
from pathlib import Path
from types import FrameType

import structlog

from daemon.base import log as logsetup
from daemon.base.errors import ConfigError, StateDirBusy, os_reason
from daemon.base.locks import StateDirLock
from daemon.config.load import load_config
from daemon.config.model import Config, DaemonSettings
from daemon.runtime.scheduler import Scheduler, Signal

log = structlog.get_logger()


def main(config_path: Path, once: bool = False) -> int:
    """`dropd run`: exit 2 on a bad config, 0 after a clean stop. `once`: send what is there
    and stop; exit 0 when every batch it took was sent, else 1."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        logsetup.configure()
        for problem in exc.problems:
            config_invalid(problem)
        return 2
    configure_log(config.daemon)
    faulthandler.enable()
    try:
        config.daemon.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        config_invalid(
            f"daemon.state_dir: {config.daemon.state_dir} "
            f"cannot be created ({exc.strerror}); create it or fix the path",
        )
        return 2
    try:
        lock = StateDirLock.acquire(config.daemon.state_dir)
    except (StateDirBusy, OSError) as exc:
        # Another dropd on this state_dir is a configuration mistake, not a crash: exit 2, so
        # systemd does not restart this one (RestartPreventExitStatus=2 in the unit).
        config_invalid(_lock_problem(config.daemon.state_dir, exc))
        return 2
    raise_open_file_limit()
    try:
        return _serve(config_path, config, once)
    finally:
        lock.release()


def config_invalid(problem: str) -> None:
    """Say why dropd cannot start: in the log, and on stderr for the person who ran it
    (a terminal shows stderr whatever the log's format; journald keeps both)."""
    log.error("config_invalid", problem=problem)
    print(f"dropd run: {problem}", file=sys.stderr, flush=True)


def configure_log(daemon: DaemonSettings) -> None:
    """Write the log as `daemon` says: its format and level (at start, and at a reload)."""
    logsetup.configure(daemon.log_format, level=daemon.log_level.number)


def _serve(config_path: Path, config: Config, once: bool) -> int:
    """Run the scheduler until it stops; 0 after a clean stop (`once`: see `main`)."""
    scheduler = Scheduler(config, once=once, configure_log=configure_log)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        scheduler.inbox.put(Signal(signum))  # SimpleQueue.put is safe in a signal handler

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, on_signal)
    log.info("daemon_starting", config=str(config_path), groups=len(config.groups), once=once)
    scheduler.start()
    scheduler.run()
    code = _once_finished(scheduler) if once else 0
    if scheduler.in_flight():
        # The pool's threads would keep the process alive until the upload ends; the spool
        # has the batch, and the next start sends it again (its receipt will say so).
        log.warning("upload_left_to_recovery", batches=scheduler.in_flight())
        logging.shutdown()
        os._exit(code)
    return code


def _once_finished(scheduler: Scheduler) -> int:
    """Say how a `--once` run went; its exit code."""
    outcome = scheduler.once_outcome()
    say = log.info if outcome.exit_code == 0 else log.warning
    say(
        "once_finished",
        exit_code=outcome.exit_code,
        batches=outcome.taken,
        sent=outcome.sent,
        failed=outcome.failed,
        held=outcome.held,
        gone=outcome.gone,
        batches_left=outcome.batches_left,
        files_left=outcome.files_left,
        blocked=[group for group, _why in outcome.blocked],
        summary=outcome.summary,
    )
    return outcome.exit_code


def _lock_problem(state_dir: Path, exc: StateDirBusy | OSError) -> str:
    """Why this dropd may not use `state_dir`, as a `daemon.state_dir: why` problem."""
    if isinstance(exc, StateDirBusy):
        holder = "another dropd" if exc.pid is None else f"another dropd (pid {exc.pid})"
        return (
            f"daemon.state_dir: {holder} runs with state_dir {state_dir}; stop it, or give "
            "this one a state_dir of its own"
        )
    lock_path = exc.filename or state_dir
    if exc.errno == errno.ELOOP:
        return (
            f"daemon.state_dir: {lock_path} is a symbolic link, and dropd never follows one "
            "there; remove it (dropd makes the lock file itself)"
        )
    return f"daemon.state_dir: {lock_path} cannot be used as dropd's lock: {os_reason(exc)}"


def raise_open_file_limit() -> None:
    """Raise the soft limit of open files to the hard limit.

    dropd holds three descriptors a group (its folder, `.dropd/work` and the lock) and must
    fit 1,000 groups, but systemd starts services with a soft limit of 1,024 (the hard one is
    524,288 since systemd 240). The low soft limit protects programs that wait with select(),
    which cannot watch a descriptor above 1,023; whatever dropd waits on must use poll() or
    `selectors` instead. glibc raises it with prlimit64, which the unit's system call filter
    allows (it refuses only the older setrlimit call).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft >= hard:
        log.debug("open_file_limit", soft=soft, hard=hard)
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (OSError, ValueError) as exc:
        log.debug("open_file_limit", soft=soft, hard=hard, raised=False, reason=str(exc))
        return
    log.debug("open_file_limit", soft=hard, hard=hard, was=soft)
