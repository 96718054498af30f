"""dropd's benchmark, run on demand (not a test): `python bench/run.py [--size-mb N] [--quick]`.

The one entry point for every figure of the speed targets. For each batch size (100 MB, then
`--size-mb`; `--quick`: 100 MB only) it writes a SIS-shaped enrollments CSV; drops it in
a fresh `dropd run` and sends it the way a sysadmin would script it (`zip -6`, then
`curl -F`), alternately, three times each, to a discard sink (bench/sink.py): the
headline, the medians; then once each to a `dropd sandbox`, which unzips and checks what
it gets; sends that ZIP again with dropd's upload and with `curl -F` to a sink that only
reads, compresses the CSV alone with each deflate engine, and times dropd's validation of
it. Then bench/scale.py's figures (idle, pickup, burst), where that module is. It prints
Markdown tables for the performance page on stdout (the targets' figures first, dropd against the
baseline), progress on stderr, and removes its temporary folder at the end. See
bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from compression import compressions
from headline import ROUNDS, sink_runs
from procs import Sandbox
from report import MB, machine, render
from scenarios import SizeResult, dropd_upload, missing_tools, sysadmin_upload
from sis_data import write_enrollments
from speeds import upload_throughput, validation

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
    parser.add_argument("--no-scale", action="store_true", help="skip bench/scale.py's figures")
    return parser.parse_args(argv)


def sizes(args: argparse.Namespace) -> list[int]:
    """The batch sizes to measure, in bytes."""
    chosen = [SMALL_MB] if args.quick else sorted({SMALL_MB, args.size_mb})
    return [mb * MB for mb in chosen]


@contextlib.contextmanager
def fresh_sandbox(folder: Path, who: str) -> Iterator[Sandbox]:
    """A new `dropd sandbox`, its store removed when it stops (its uploads: a GB each)."""
    store = folder / f"store-{who}"
    sandbox = Sandbox.start(
        store, folder / f"sandbox-{who}.log", "bench", secrets.token_urlsafe(16)
    )
    try:
        yield sandbox
    finally:
        sandbox.stop()
        shutil.rmtree(store, ignore_errors=True)


def one_size(work: Path, size: int, seed: int) -> SizeResult:
    """Every measurement on one freshly written CSV of `size` bytes."""
    folder = work / f"{size // MB}MB"
    folder.mkdir()
    source = folder / "enrollments.csv"
    progress(f"{size // MB} MB: writing {source.name}")
    rows = write_enrollments(source, size, seed)
    written = source.stat().st_size
    deadline = 300 + size / MB
    progress(f"{size // MB} MB: to a discard sink, {ROUNDS} runs each, alternating")
    sink_dropd, sink_admin = sink_runs(
        folder, source, deadline, lambda message: progress(f"{size // MB} MB: {message}")
    )
    # Each contender gets a fresh sandbox, so that neither finds the other's memory warm.
    with fresh_sandbox(folder, "dropd") as sandbox:
        progress(f"{size // MB} MB: dropd run to a sandbox, from drop to receipt")
        dropd = dropd_upload(folder, source, sandbox, deadline)
    admin, note = None, ""
    if missing := missing_tools():
        note = f"skipped, {' and '.join(missing)} not installed"
    else:
        with fresh_sandbox(folder, "sysadmin") as sandbox:
            progress(f"{size // MB} MB: zip -6 && curl -F to a sandbox")
            admin = sysadmin_upload(folder, source, sandbox)
    upload = None
    if admin is not None:
        progress(f"{size // MB} MB: upload throughput, dropd and curl -F, the same ZIP")
        upload = upload_throughput(folder / "sysadmin" / (source.stem + ".zip"))
    progress(f"{size // MB} MB: compression alone, each engine")
    compressed = compressions(folder, source)
    progress(f"{size // MB} MB: validation")
    validated = validation(source)
    shutil.rmtree(folder)
    return SizeResult(
        written, rows, dropd, admin, note, compressed, validated, upload, sink_dropd, sink_admin
    )


def scale_figures(parent: Path, quick: bool) -> tuple[list[Any], str]:
    """bench/scale.py's rows (idle CPU and RSS, poll mode, pickup, the 10,000-file burst),
    from its `run_all(work_dir, quick)`, where that module is; else a note saying why not."""
    try:
        scale = importlib.import_module("scale")
    except ImportError:
        return [], "bench/scale.py is not there: idle, pickup and burst figures not measured."
    run_all = getattr(scale, "run_all", None)
    if run_all is None:
        return [], "bench/scale.py has no run_all(work_dir, quick): its figures not measured."
    progress("scale: bench/scale.py's run_all (idle, poll, pickup, burst)")
    try:
        return list(run_all(parent, quick)), ""
    except Exception as exc:  # its failure must not cost the figures measured before it
        progress(f"scale: bench/scale.py failed: {exc!r}")
        return [], f"bench/scale.py failed ({type(exc).__name__}: {exc}); see its output above."


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
    scaled, note = (
        ([], "skipped (--no-scale).") if args.no_scale else scale_figures(parent, args.quick)
    )
    print(render(results, scaled, note, described, (load, os.getloadavg()[0])), end="")
    progress(f"done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
