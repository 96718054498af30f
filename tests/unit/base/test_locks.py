"""Tests of the one-dropd-per-state_dir lock (daemon/base/locks.py), across real processes."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.base.errors import StateDirBusy
from daemon.base.locks import LOCK_FILE, StateDirLock
from unit.child import run_child, start_child

# Another process that takes the lock, says so, and keeps it until its stdin closes.
_HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from daemon.base.errors import StateDirBusy
    from daemon.base.locks import StateDirLock

    try:
        lock = StateDirLock.acquire(Path(sys.argv[1]))
    except StateDirBusy as exc:
        print(f"busy {exc.pid}", flush=True)
        sys.exit(3)
    print("locked", flush=True)
    sys.stdin.read()
    lock.release()
    """
)


def start_holder(state_dir: Path) -> subprocess.Popen[str]:
    return start_child(_HOLDER, str(state_dir))


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """A process holding `tmp_path`'s lock until the test ends."""
    process = start_holder(tmp_path)
    assert process.stdout is not None and process.stdin is not None
    try:
        assert process.stdout.readline().strip() == "locked"
        yield process
    finally:
        process.stdin.close()
        process.wait(timeout=60)
        process.stdout.close()


def test_acquire_while_another_process_holds_it_names_that_process(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    with pytest.raises(StateDirBusy) as caught:
        StateDirLock.acquire(tmp_path)
    assert caught.value.state_dir == tmp_path
    assert caught.value.pid == holder.pid
    assert str(caught.value) == f"another dropd (pid {holder.pid}) runs with state_dir {tmp_path}"


def test_acquire_again_once_the_holder_has_exited(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    assert holder.stdin is not None
    holder.stdin.close()
    assert holder.wait(timeout=60) == 0
    lock = StateDirLock.acquire(tmp_path)
    try:
        assert (tmp_path / LOCK_FILE).read_text() == f"{os.getpid()}\n"
    finally:
        lock.release()


def test_acquire_after_a_holder_killed_with_sigkill(tmp_path: Path) -> None:
    process = start_holder(tmp_path)
    assert process.stdout is not None and process.stdin is not None
    assert process.stdout.readline().strip() == "locked"
    process.kill()
    process.wait(timeout=60)
    process.stdin.close()
    process.stdout.close()
    lock = StateDirLock.acquire(tmp_path)  # the kernel let go with the process; no stale lock
    lock.release()


def test_held_here_refuses_another_process_with_this_pid(tmp_path: Path) -> None:
    lock = StateDirLock.acquire(tmp_path)
    try:
        result = run_child(_HOLDER, str(tmp_path))
    finally:
        lock.release()
    assert (result.returncode, result.stdout) == (3, f"busy {os.getpid()}\n")


def test_release_lets_another_process_take_it(tmp_path: Path) -> None:
    lock = StateDirLock.acquire(tmp_path)
    lock.release()
    lock.release()  # a second release does nothing
    result = run_child(_HOLDER, str(tmp_path))
    assert (result.returncode, result.stdout) == (0, "locked\n")


def test_busy_without_a_readable_pid_has_none(tmp_path: Path) -> None:
    # The holder took the lock and has not written its pid yet: an empty file.
    lock = StateDirLock.acquire(tmp_path)
    try:
        (tmp_path / LOCK_FILE).write_text("")
        with pytest.raises(StateDirBusy) as caught:
            StateDirLock.acquire(tmp_path)
    finally:
        lock.release()
    assert caught.value.pid is None
    assert str(caught.value) == f"another dropd runs with state_dir {tmp_path}"


def test_lock_file_is_private_and_overwrites_an_old_pid(tmp_path: Path) -> None:
    (tmp_path / LOCK_FILE).write_text("9999999999 and more left by an older dropd\n")
    lock = StateDirLock.acquire(tmp_path)
    try:
        assert (tmp_path / LOCK_FILE).read_text() == f"{os.getpid()}\n"
    finally:
        lock.release()
    (tmp_path / "fresh").mkdir()
    lock = StateDirLock.acquire(tmp_path / "fresh")
    lock.release()
    assert stat.S_IMODE((tmp_path / "fresh" / LOCK_FILE).stat().st_mode) == 0o600


def test_link_at_the_lock_is_refused_and_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    (tmp_path / LOCK_FILE).symlink_to(target)
    with pytest.raises(OSError) as caught:
        StateDirLock.acquire(tmp_path)
    assert caught.value.errno == errno.ELOOP
    assert not target.exists()


def test_fifo_at_the_lock_is_refused_without_hanging(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / LOCK_FILE)
    with pytest.raises(OSError) as caught:
        StateDirLock.acquire(tmp_path)
    assert caught.value.errno == errno.EINVAL
    assert caught.value.strerror == "it is not a regular file"


def test_a_program_dropd_starts_does_not_keep_the_lock(tmp_path: Path) -> None:
    lock = StateDirLock.acquire(tmp_path)
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)"], close_fds=False
    )
    try:
        lock.release()
        result = run_child(_HOLDER, str(tmp_path))
    finally:
        child.kill()
        child.wait(timeout=60)
    assert (result.returncode, result.stdout) == (0, "locked\n")
