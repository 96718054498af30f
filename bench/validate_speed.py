"""How fast dropd's validation reads a large CSV, and what memory it takes: run on demand.

    .venv/bin/python bench/validate_speed.py [--size-mb 300] [--seed 7] [--work-dir DIR]
    .venv/bin/python bench/validate_speed.py --file PATH --json    # what bench/run.py runs

Writes a SIS-shaped enrollments CSV (`sis_data`, as bench/run.py does) in a temporary
folder, or reads the one given, then times `validate_batch` on it from a warm page cache,
five ways: strict as dropd runs it (a CSV of 32 MB or more on both cores, with the scan
helper process; the best of `--repeats` runs), strict on one core (no helper), the same
with the checks in Python only (no compiled row scanner, as where dropd was installed
without a C compiler), strict on one core without the row-value warnings (status and
role: their cost, measured by switching them off here only), and `validation = "off"`.
Prints MB/s (10^6 bytes a second), the process's peak RSS (`ru_maxrss`, its own: this runs
as its own process) and the scan helper's (`VmHWM` of the child).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any
from unittest import mock

from procs import proc_field
from sis_data import write_enrollments

from daemon.checks.csv.fast import ROWSCAN
from daemon.checks.csv.formats import ValueRule, value_rules
from daemon.checks.csv.scanhelper import HelperPool, scan_splitter
from daemon.checks.validate import Report, validate_batch
from daemon.config.model import Validation

# label, validation, row-value rules on, the scan helper on, the row scanner on
WAYS = (
    ("strict", Validation.STRICT, True, True, True),
    ("strict, one core", Validation.STRICT, True, False, True),
    ("strict, one core, Python only", Validation.STRICT, True, False, False),
    ("strict, one core, no row-value warnings", Validation.STRICT, False, False, True),
    ("off", Validation.OFF, True, False, True),
)


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def no_rules(kind: str, header: tuple[str, ...]) -> tuple[ValueRule, ...]:
    return ()


def timed(run: Callable[[], Report], repeats: int) -> tuple[float, Report]:
    """The best of `repeats` runs, after one that warms the page cache and the patterns."""
    report = run()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        report = run()
        best = min(best, time.perf_counter() - start)
    return best, report


def helper_peak_mib(helpers: HelperPool) -> float | None:
    """The scan helper's VmHWM (MiB), where it was started."""
    child = getattr(helpers, "_child", None)
    if child is None:
        return None
    kib = proc_field(child.process.pid, "VmHWM")
    return kib / 1024 if kib is not None else None


def measure(path: Path, repeats: int) -> dict[str, Any]:
    """Every way's seconds and findings on the CSV at `path`, and the peak RSS."""
    size = path.stat().st_size
    figures: dict[str, Any] = {"bytes": size, "start_peak_mib": peak_mib(), "ways": {}}
    helpers, splitter = scan_splitter()
    for label, validation, values, helper, scanner in WAYS:
        with (
            mock.patch("daemon.checks.csv.rows.value_rules", value_rules if values else no_rules),
            mock.patch("daemon.checks.csv.fast.ROWSCAN", ROWSCAN if scanner else None),
        ):
            run = partial(validate_batch, [path], validation, splitter=splitter if helper else None)
            seconds, report = timed(run, repeats if label == "strict" else 1)
        figures["ways"][label] = {
            "seconds": seconds,
            "mb_per_s": size / seconds / 1e6,
            "rows": report.rows.get(path.name),
            "deleted": report.deleted.get(path.name),
            "problems": len(report.problems),
            "warnings": len(report.warnings),
        }
    figures["peak_mib"] = peak_mib()
    figures["helper_peak_mib"] = helper_peak_mib(helpers)
    helpers.close()
    return figures


def show(path: Path, figures: dict[str, Any]) -> None:
    size, start = figures["bytes"] / 1e6, figures["start_peak_mib"]
    print(f"{path.name}: {size:,.0f} MB; peak RSS {start:.0f} MiB")
    for label, way in figures["ways"].items():
        found = f"rows {way['rows']}, deleted {way['deleted']}, {way['problems']} problems"
        print(f"{label:42} {way['mb_per_s']:6,.0f} MB/s  ({found})")
    helper = figures["helper_peak_mib"]
    beside = f"; the scan helper's {helper:.0f} MiB" if helper is not None else ""
    print(f"peak RSS after: {figures['peak_mib']:.0f} MiB{beside}")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--work-dir", type=Path)
    parser.add_argument("--file", type=Path, help="a CSV to read instead of writing one")
    parser.add_argument("--repeats", type=int, default=2, help="timed strict runs (the best)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.work_dir) as folder:
        path = args.file
        if path is None:
            path = Path(folder) / "enrollments.csv"
            write_enrollments(path, args.size_mb * 10**6, args.seed)
        figures = measure(path, args.repeats)
    if args.json:
        print(json.dumps(figures))
    else:
        show(path, figures)


if __name__ == "__main__":
    main(sys.argv[1:])
