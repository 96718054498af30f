"""How fast dropd's validation reads a large CSV, and what memory it takes: run on demand.

    .venv/bin/python bench/validate_speed.py [--size-mb 300] [--kind users] [--work-dir DIR]
    .venv/bin/python bench/validate_speed.py --file PATH --json    # what bench/run.py runs

Writes a SIS-shaped enrollments CSV (`sis_data`, as bench/run.py does) or users CSV in a
temporary folder, or reads the one given, then times `validate_batch` on it from a warm
page cache, five ways: strict as dropd runs it (a CSV of 8 MB or more with the compiled
row scanner on two threads; the best of `--repeats` runs), strict with the scanner on one
thread, the same with the reference reader alone (no compiled row scanner, as where dropd
was installed without a C compiler, or with DROPD_ROWSCAN=off), strict on one thread
without the row-value warnings (status, role and login_id: their cost, measured by
switching them off here only), and `validation = "off"`. Prints MB/s (10^6 bytes a
second) and the process's peak RSS (`ru_maxrss`: this runs as its own process).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
import unicodedata
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any
from unittest import mock

from sis_data import write_blocks, write_enrollments
from steal import Steal

from daemon.checks.csv.check import FIRST_BAD_UTF8, ROWSCAN, THREADED_BYTES
from daemon.checks.csv.formats import ValueRule, value_rules
from daemon.checks.validate import Report, validate_batch
from daemon.config.model import Validation

# label, validation, row-value rules on, two threads, the row scanner on
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


USERS_HEADER = b"user_id,login_id,first_name,last_name,email,status\n"
# Names as written (about half the rows hold an accented one, as school rolls do); a login
# spells them in ASCII.
_NAMES = (
    *("Ann", "Bo", "Chen", "Dana", "Eli", "Fatima", "Gus", "Hana", "Ivo", "Jo", "Kemal"),
    *("Chloé", "José", "Zoë", "Hélène", "Núñez"),
)


def write_users(path: Path, size: int, seed: int = 7) -> int:
    """Write a users CSV of about `size` bytes (whole rows, about half with an accented
    name, 2% quoted, 1 in 1,000 with a backslash); its size."""
    rng = random.Random(seed)
    rows = []
    for _ in range(5000):
        first, last = rng.choice(_NAMES), rng.choice(_NAMES) + "son"
        login = unicodedata.normalize("NFKD", f"{first}.{last}").encode("ascii", "ignore")
        status = rng.choices(("active", "suspended", "deleted"), (0.96, 0.02, 0.02))[0]
        # As SIS exports write them: 2% of names quoted for a comma, 1 in 1,000 a backslash.
        shown = rng.choices((last, f'"{last}, Jr."', f"{last}\\Art"), (0.979, 0.02, 0.001))[0]
        rows.append(
            f"#####%s,{login.decode()}%s@example.edu,{first},{shown},x%s@mail.example.org,{status}"
        )
    template = "\n".join(row % ((n,) * 3) for n, row in enumerate(rows)).encode() + b"\n"
    return write_blocks(path, USERS_HEADER, template, size)


def measure(path: Path, repeats: int) -> dict[str, Any]:
    """Every way's seconds and findings on the CSV at `path`, and the peak RSS."""
    size = path.stat().st_size
    figures: dict[str, Any] = {"bytes": size, "start_peak_mib": peak_mib(), "ways": {}}
    with Steal() as steal:
        _measure_ways(path, repeats, figures)
    figures["peak_mib"] = peak_mib()
    figures["helper_peak_mib"] = None  # no helper process any more; bench/speeds.py reads it
    figures["host_steal"] = steal.share
    return figures


def _measure_ways(path: Path, repeats: int, figures: dict[str, Any]) -> None:
    size = figures["bytes"]
    for label, validation, values, threads, scanner in WAYS:
        with (
            mock.patch("daemon.checks.csv.check.value_rules", value_rules if values else no_rules),
            mock.patch("daemon.checks.csv.check.ROWSCAN", ROWSCAN if scanner else None),
            mock.patch(
                "daemon.checks.csv.check.FIRST_BAD_UTF8", FIRST_BAD_UTF8 if scanner else None
            ),
            mock.patch(
                "daemon.checks.csv.check.THREADED_BYTES", THREADED_BYTES if threads else 1 << 62
            ),
        ):
            run = partial(validate_batch, [path], validation)
            seconds, report = timed(run, repeats if label == "strict" else 1)
        figures["ways"][label] = {
            "seconds": seconds,
            "mb_per_s": size / seconds / 1e6,
            "rows": report.rows.get(path.name),
            "deleted": report.deleted.get(path.name),
            "problems": len(report.problems),
            "warnings": len(report.warnings),
        }


def show(path: Path, figures: dict[str, Any]) -> None:
    size, start = figures["bytes"] / 1e6, figures["start_peak_mib"]
    print(f"{path.name}: {size:,.0f} MB; peak RSS {start:.0f} MiB")
    for label, way in figures["ways"].items():
        found = f"rows {way['rows']}, deleted {way['deleted']}, {way['problems']} problems"
        print(f"{label:42} {way['mb_per_s']:6,.0f} MB/s  ({found})")
    print(f"peak RSS after: {figures['peak_mib']:.0f} MiB")
    print(Steal.describe(figures["host_steal"]))


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--kind", choices=("enrollments", "users"), default="enrollments")
    parser.add_argument("--work-dir", type=Path)
    parser.add_argument("--file", type=Path, help="a CSV to read instead of writing one")
    parser.add_argument("--repeats", type=int, default=2, help="timed strict runs (the best)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.work_dir) as folder:
        path = args.file
        if path is None:
            path = Path(folder) / f"{args.kind}.csv"
            write = write_users if args.kind == "users" else write_enrollments
            write(path, args.size_mb * 10**6, args.seed)
        figures = measure(path, args.repeats)
    if args.json:
        print(json.dumps(figures))
    else:
        show(path, figures)


if __name__ == "__main__":
    main(sys.argv[1:])
