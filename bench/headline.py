"""The headline figure: a CSV from drop to the server's 200, the windows taken off,
against `zip -6 && curl -F`, both to one discard sink (bench/sink.py), ROUNDS times each.

The contenders alternate (dropd, the script, dropd, ...), so that a slow spell of a shared
machine falls on both; each dropd is a fresh `dropd run` in a fresh folder (no token
cached, as the script has none), the sink the same process throughout. The figure is the
median of each, and the ratio of the medians.
"""

from __future__ import annotations

import secrets
import shutil
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from scenarios import DropdRun, Upload, dropd_upload, missing_tools, sysadmin_upload
from sink import Sink

ROUNDS = 3
Run = TypeVar("Run", DropdRun, Upload)


def sink_runs(
    folder: Path, source: Path, deadline: float, say: Callable[[str], None], rounds: int = ROUNDS
) -> tuple[list[DropdRun], list[Upload]]:
    """dropd's runs and the script's (none without zip or curl), to one sink, alternating."""
    dropd: list[DropdRun] = []
    script: list[Upload] = []
    scripted = not missing_tools()
    sink = Sink.start(folder / "sink.log", "bench", secrets.token_urlsafe(16))
    try:
        for round_ in range(1, rounds + 1):
            work = folder / f"sink-{round_}"
            work.mkdir()
            say(f"dropd run to the sink, {round_} of {rounds}")
            dropd.append(dropd_upload(work, source, sink, deadline))
            if scripted:
                say(f"zip -6 && curl -F to the sink, {round_} of {rounds}")
                script.append(sysadmin_upload(work, source, sink))
            shutil.rmtree(work)  # its ZIPs, and its link to the CSV in sent/
    finally:
        sink.stop()
    return dropd, script


def dropd_seconds(run: DropdRun) -> float | None:
    """Its drop → 200, windows taken off, where its log had the answer."""
    return run.to_answer


def script_seconds(upload: Upload) -> float | None:
    """Its zip -6 + token + curl -F, whole-process times added up."""
    return upload.seconds


def times(runs: list[Run], seconds: Callable[[Run], float | None]) -> list[float]:
    """The runs' figures, in the order they ran, leaving out any not known."""
    return [value for run in runs if (value := seconds(run)) is not None]


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def median_run(runs: list[Run], seconds: Callable[[Run], float | None]) -> Run | None:
    """The run whose figure is the median (of an even count, the faster middle one): the
    one whose steps are shown."""
    timed = sorted((run for run in runs if seconds(run) is not None), key=lambda r: seconds(r) or 0)
    return timed[(len(timed) - 1) // 2] if timed else None


def spread(values: list[float]) -> str:
    """The fastest and slowest of the runs, shown beside the median."""
    return f"{min(values):,.2f} to {max(values):,.2f} s" if values else "n/a"
