"""How fast dropd's validation reads a large CSV, and what memory it takes: run on demand.

    .venv/bin/python bench/validate_speed.py [--size-mb 300] [--seed 7] [--work-dir DIR]

Writes a SIS-shaped enrollments CSV (`sis_data`, as bench/run.py does) in a temporary
folder, then times `validate_batch` on it from a warm page cache, three ways: strict (what
a group runs by default), strict without the row-value warnings (status and role: their
cost, measured by switching them off here only), and `validation = "off"`. Prints MB/s
(10^6 bytes a second) and the process's peak RSS (`ru_maxrss`) before and after.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from unittest import mock

from sis_data import write_enrollments

from daemon.config import Validation
from daemon.csvformats import ValueRule, value_rules
from daemon.validate import Report, validate_batch


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def no_rules(kind: str, header: tuple[str, ...]) -> tuple[ValueRule, ...]:
    return ()


def timed(run: Callable[[], Report], size: int) -> tuple[float, Report]:
    run()  # warms the page cache and the compiled patterns
    start = time.perf_counter()
    report = run()
    return size / (time.perf_counter() - start) / 1e6, report


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--work-dir", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.work_dir) as folder:
        path = Path(folder) / "enrollments.csv"
        rows = write_enrollments(path, args.size_mb * 10**6, args.seed)
        size = path.stat().st_size
        print(f"{path.name}: {size / 1e6:,.0f} MB, {rows:,} rows; peak RSS {peak_mib():.0f} MiB")
        for label, validation, values in (
            ("strict", Validation.STRICT, True),
            ("strict, no row-value warnings", Validation.STRICT, False),
            ("off", Validation.OFF, True),
        ):
            with mock.patch("daemon.csvcheck.value_rules", value_rules if values else no_rules):
                speed, report = timed(partial(validate_batch, [path], validation), size)
            figures = f"rows {report.rows.get(path.name)}, deleted {report.deleted.get(path.name)}"
            print(f"{label:31} {speed:6,.0f} MB/s  ({figures}, {len(report.problems)} problems)")
        print(f"peak RSS after: {peak_mib():.0f} MiB")


if __name__ == "__main__":
    main(sys.argv[1:])
