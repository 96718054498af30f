"""Tests of inotify events turned into scheduler messages (daemon/watch.py), on real folders."""

from __future__ import annotations

import os
import queue
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.intake.watch import FolderChanged, FolderWatcher, _GroupCallback

QUIET = 0.3  # how long a test waits to be sure no message comes


@pytest.fixture
def inbox() -> queue.SimpleQueue[object]:
    return queue.SimpleQueue()


@pytest.fixture
def watcher(inbox: queue.SimpleQueue[object]) -> Iterator[FolderWatcher]:
    made = FolderWatcher(inbox)
    yield made
    made.stop()


def groups_told(inbox: queue.SimpleQueue[object], wait: float = 5.0) -> set[str]:
    """The groups named by the messages that arrive within `wait` s of the first, drained."""
    told: set[str] = set()
    try:
        message = inbox.get(timeout=wait)
    except queue.Empty:
        return told
    while True:
        assert isinstance(message, FolderChanged)
        told.add(message.group)
        try:
            message = inbox.get(timeout=QUIET)
        except queue.Empty:
            return told


def test_folder_watcher_tells_the_group_of_a_file_written_and_renamed_in(
    tmp_path: Path, inbox: queue.SimpleQueue[object], watcher: FolderWatcher
) -> None:
    music, art = tmp_path / "music", tmp_path / "art"
    music.mkdir()
    art.mkdir()
    watcher.watch("music", music)
    watcher.watch("art", art)

    (music / ".users.csv.part").write_bytes(b"x\n")
    os.rename(music / ".users.csv.part", music / "users.csv")
    assert groups_told(inbox) == {"music"}

    (tmp_path / "courses.csv").write_bytes(b"y\n")
    os.rename(tmp_path / "courses.csv", art / "courses.csv")
    assert groups_told(inbox) == {"art"}


def test_folder_watcher_a_rename_out_does_not_hold_back_what_follows(
    tmp_path: Path, inbox: queue.SimpleQueue[object], watcher: FolderWatcher
) -> None:
    # watchdog's observer held every event behind a rename out of the folder (a claim) for
    # half a second; here the next file is told as soon as it comes.
    folder, elsewhere = tmp_path / "music", tmp_path / "work"
    folder.mkdir()
    elsewhere.mkdir()
    (folder / "users.csv").write_bytes(b"x\n")
    watcher.watch("music", folder)
    os.rename(folder / "users.csv", elsewhere / "users.csv")
    assert groups_told(inbox) == {"music"}
    (folder / "courses.csv").write_bytes(b"y\n")
    assert groups_told(inbox) == {"music"}


def test_folder_watcher_ignores_reads_listings_and_each_write(
    tmp_path: Path, inbox: queue.SimpleQueue[object], watcher: FolderWatcher
) -> None:
    folder = tmp_path / "music"
    folder.mkdir()
    (folder / "users.csv").write_bytes(b"x\n")
    watcher.watch("music", folder)
    with open(folder / "users.csv", "ab") as growing:
        os.listdir(folder)
        (folder / "users.csv").read_bytes()
        growing.write(b"more\n")
        growing.flush()
        assert groups_told(inbox, wait=QUIET) == set()
    assert groups_told(inbox) == {"music"}  # the close after writing ends it


def test_folder_watcher_unwatch_ends_the_messages(
    tmp_path: Path, inbox: queue.SimpleQueue[object], watcher: FolderWatcher
) -> None:
    folder = tmp_path / "music"
    folder.mkdir()
    watcher.watch("music", folder)
    assert watcher.watching("music")
    watcher.unwatch("music")
    assert not watcher.watching("music")
    (folder / "users.csv").write_bytes(b"x\n")
    assert groups_told(inbox, wait=QUIET) == set()


def test_folder_watcher_a_folder_removed_is_told_and_watched_again_when_back(
    tmp_path: Path, inbox: queue.SimpleQueue[object], watcher: FolderWatcher
) -> None:
    folder = tmp_path / "music"
    folder.mkdir()
    watcher.watch("music", folder)
    shutil.rmtree(folder)
    assert groups_told(inbox) == {"music"}
    assert not watcher.watching("music")

    folder.mkdir()
    watcher.watch("music", folder)
    assert watcher.watching("music")
    (folder / "users.csv").write_bytes(b"x\n")
    assert groups_told(inbox) == {"music"}


def test_folder_watcher_a_missing_folder_raises_and_watches_none(
    tmp_path: Path, watcher: FolderWatcher
) -> None:
    present = tmp_path / "music"
    present.mkdir()
    with pytest.raises(OSError):
        watcher.watch("music", present, tmp_path / "missing")
    assert not watcher.watching("music")


def test_folder_watcher_overflow_tells_every_group(inbox: queue.SimpleQueue[object]) -> None:
    # The inotify thread calls this on IN_Q_OVERFLOW, for every callback it holds.
    for group in ("music", "art"):
        _GroupCallback(group, inbox, set()).on_queue_overflow()
    assert groups_told(inbox) == {"music", "art"}


def test_folder_watcher_alive_until_stopped(inbox: queue.SimpleQueue[object]) -> None:
    made = FolderWatcher(inbox)
    assert made.alive()
    made.stop()
    deadline = time.monotonic() + 5
    while made.alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not made.alive()
