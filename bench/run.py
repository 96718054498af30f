"""dropd's benchmark, run on demand (not a test): `python bench/run.py [--size-mb N] [--quick]`.

For each batch size (100 MB, then `--size-mb`; `--quick`: 100 MB only) it writes a
SIS-shaped enrollments CSV, starts a `dropd sandbox` and a `dropd run`, drops the file and
times it to its receipt, sends the same file the way a sysadmin would script it
(`zip -6`, then `curl -F`) to the same sandbox, and compresses it alone with the standard
library. It prints Markdown tables for the README on stdout, progress on stderr, and
removes its temporary folder at the end. See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

from procs import Sandbox
from report import MB, machine, render
from scenarios import (
    SizeResult,
    compressions,
    dropd_upload,
    missing_tools,
    sysadmin_upload,
)
from sis_data import write_enrollments

SMALL_MB = 100
DISK_FACTOR = 3.5  # the CSV, the sandbox's copy of it, and the ZIPs of it, with a margin


def progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=1000, help="the big batch (default 1000)")
    parser.add_argument("--quick", action="store_true", help=f"{SMALL_MB} MB only")
    parser.add_argument("--seed", type=int, default=7, help="for the generated CSV")
    parser.add_argument("--work-dir", type=Path, help="where the temporary folder goes")
    return parser.parse_args(argv)


def sizes(args: argparse.Namespace) -> list[int]:
    """The batch sizes to measure, in bytes."""
    chosen = [SMALL_MB] if args.quick else sorted({SMALL_MB, args.size_mb})
    return [mb * MB for mb in chosen]


def clear(folder: Path) -> None:
    """Remove what is in `folder` (the sandbox's kept uploads: a GB each)."""
    for path in folder.iterdir():
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def one_size(work: Path, size: int, seed: int) -> SizeResult:
    """Every measurement on one freshly written CSV of `size` bytes."""
    folder = work / f"{size // MB}MB"
    folder.mkdir()
    source = folder / "enrollments.csv"
    progress(f"{size // MB} MB: writing {source.name}")
    rows = write_enrollments(source, size, seed)
    written = source.stat().st_size
    store = folder / "store"
    sandbox = Sandbox.start(store, folder / "sandbox.log", "bench", secrets.token_urlsafe(16))
    try:
        progress(f"{size // MB} MB: dropd run, from drop to receipt")
        dropd = dropd_upload(folder, source, sandbox, deadline=300 + size / MB)
        clear(store)
        admin, note = None, ""
        if missing := missing_tools():
            note = f"skipped, {' and '.join(missing)} not installed"
        else:
            progress(f"{size // MB} MB: zip -6 && curl -F")
            admin = sysadmin_upload(folder, source, sandbox)
        clear(store)
    finally:
        sandbox.stop()
    progress(f"{size // MB} MB: compression alone")
    compressed = compressions(folder, source)
    shutil.rmtree(folder)
    return SizeResult(written, rows, dropd, admin, note, compressed)


def main(argv: list[str]) -> int:
    args = parse(argv)
    chosen = sizes(args)
    parent = args.work_dir or Path(tempfile.gettempdir())
    needed = DISK_FACTOR * max(chosen)
    if shutil.disk_usage(parent).free < needed:
        progress(f"{parent} has less than {needed / 1e9:.1f} GB free; pick --work-dir or --size-mb")
        return 2
    work = Path(tempfile.mkdtemp(prefix="dropd-bench-", dir=parent))
    started = time.monotonic()
    try:
        described, load = machine(work), os.getloadavg()[0]
        results = [one_size(work, size, args.seed) for size in chosen]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(render(results, described, (load, os.getloadavg()[0])), end="")
    progress(f"done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
