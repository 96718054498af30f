"""Fixtures for end-to-end tests: every process a test starts is stopped at its end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import DaemonProcess, SandboxProcess, start_sandbox
from proxy import HttpProxy


@pytest.fixture
def processes() -> Iterator[list[SandboxProcess | DaemonProcess]]:
    """Everything a test starts, stopped at its end whatever happened."""
    started: list[SandboxProcess | DaemonProcess] = []
    yield started
    for item in reversed(started):
        item.stop()


@pytest.fixture
def sandbox(tmp_path: Path, processes: list[SandboxProcess | DaemonProcess]) -> SandboxProcess:
    """One sandbox accepting client `unit-a` with secret `secret-a-1234`."""
    box = start_sandbox(tmp_path / "store-a", ["unit-a:secret-a-1234"])
    processes.append(box)
    return box


@pytest.fixture
def proxies() -> Iterator[list[HttpProxy]]:
    """Proxies a test starts, stopped at its end (request it before `processes`)."""
    started: list[HttpProxy] = []
    yield started
    for proxy in started:
        proxy.stop()
