"""Python code run in a child process: another dropd, as far as a lock can tell."""

from __future__ import annotations

import subprocess
import sys

__all__ = ["run_child", "start_child"]


def start_child(script: str, *args: str) -> subprocess.Popen[str]:
    """`python -c SCRIPT ARGS...`, started, its stdin and stdout pipes of text."""
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def run_child(
    script: str, *args: str, timeout: float = 60, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """`python -c SCRIPT ARGS...` run to its end, with an empty stdin; its output kept."""
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        input="",
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
    )
