"""Tests of opening a dropped file (daemon/regular.py)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from daemon.base.regular import open_regular


def test_open_regular_refuses_a_link_and_a_fifo_without_waiting(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"do not read")
    link = tmp_path / "users.csv"
    link.symlink_to(secret)
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    with pytest.raises(OSError) as through_link:
        open_regular(link)
    assert through_link.value.errno == errno.ELOOP
    with pytest.raises(OSError) as through_fifo:
        open_regular(fifo)  # returns at once: no writer is awaited
    assert through_fifo.value.errno == errno.EINVAL
    with open_regular(secret) as plain:
        assert plain.read() == b"do not read"
