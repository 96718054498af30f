"""The machine's description and the results as Markdown tables, for the performance page."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import zlib
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

import headline
import summary
from compression import Compression
from scenarios import WINDOW_SECONDS, SizeResult, Step, Upload

MB = 1_000_000
Pair = tuple[float | None, float | None]  # dropd's seconds, zip + curl's
TARGET_RSS_MIB = 80_000_000 / (1 << 20)  # the target's "under 80 MB", in MiB


def _first_match(path: str, pattern: str) -> str | None:
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    match = re.search(pattern, text, re.MULTILINE)
    return match.group(1).strip() if match else None


def _tool_version(args: list[str], pattern: str) -> str:
    if shutil.which(args[0]) is None:
        return f"{args[0]} not installed"
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    match = re.search(pattern, done.stdout)
    return match.group(0) if match else args[0]


def _package(name: str) -> str:
    try:
        return f"{name} {metadata.version(name)}"
    except metadata.PackageNotFoundError:
        return f"{name} not installed"


def machine(work: Path) -> str:
    """One paragraph: CPU, cores, memory, OS, Python and zlib, tools, disk free."""
    cpu = _first_match("/proc/cpuinfo", r"^model name\s*:\s*(.+)$") or platform.processor()
    kib = _first_match("/proc/meminfo", r"^MemTotal:\s*(\d+)")
    memory = f"{int(kib) / (1 << 20):.1f} GiB RAM" if kib else "RAM unknown"
    system = _first_match("/etc/os-release", r'^PRETTY_NAME="?([^"\n]+)') or platform.system()
    free = shutil.disk_usage(work).free / 1e9
    tools = [
        _tool_version(["zip", "-v"], r"Zip \d+\.\d+"),
        _tool_version(["curl", "--version"], r"curl \S+"),
        *(_package(name) for name in ("isal", "zlib-ng", "requests-toolbelt", "urllib3")),
    ]
    return (
        f"{cpu}, {os.cpu_count()} cores, {memory}; {system}, Linux {platform.release()}; "
        f"Python {platform.python_version()} (zlib {zlib.ZLIB_RUNTIME_VERSION}); "
        f"{', '.join(tools)}; {free:.0f} GB free on the disk under test ({work})."
    )


def _n(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _rate(size: int, seconds: float | None) -> str:
    return _n(size / MB / seconds, 0) if seconds else "n/a"


def _size(size: int) -> str:
    return f"{size / MB:,.0f} MB"


def _table(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def memory_table(results: list[SizeResult]) -> list[str]:
    """Peak RSS of every process, and whether dropd's is flat and under target."""
    rows = []
    for r in results:
        admin = {s.name: s.peak_mib for s in r.sysadmin.steps} if r.sysadmin else {}
        rows.append(
            [
                _size(r.size),
                _n(r.dropd.idle_mib),
                f"**{_n(r.dropd.upload.peak_mib)}**",
                _n(r.dropd.server_peak_mib),
                _n(admin.get("zip -6")),
                _n(admin.get("send: curl -F read and sent the ZIP")),
            ]
        )
    header = ["batch", "dropd run, idle", "**dropd run, peak (VmHWM)**", "sandbox, peak"]
    lines = _table([*header, "zip -6, peak", "curl -F, peak"], rows)
    peaks = [r.dropd.upload.peak_mib for r in results if r.dropd.upload.peak_mib]
    if peaks:
        spread = max(peaks) - min(peaks)
        verdict = "under" if max(peaks) < TARGET_RSS_MIB else "OVER"
        lines += [
            "",
            f"dropd's peak RSS: {' / '.join(_n(p) for p in peaks)} MiB across the batch sizes "
            f"(spread {_n(spread)} MiB); {verdict} the 80 MB ({TARGET_RSS_MIB:.1f} MiB) target.",
        ]
    return lines


def _upload_row(r: SizeResult, upload: Upload, how: str, seconds: float | None) -> list[str]:
    body = "-" if upload.body_bytes is None else _n(upload.body_bytes / MB)
    return [
        _size(r.size),
        how,
        _n(seconds, 2),
        _rate(r.size, seconds),
        _n(upload.zip_bytes / MB),
        _n(r.size / upload.zip_bytes, 2),
        body,
        _n(upload.peak_mib),
        str(upload.status),
    ]


def _sink_rows(r: SizeResult) -> list[list[str]]:
    """Each run to the discard sink, dropd's first, in the order each contender ran."""
    windows = f"{WINDOW_SECONDS:g} s windows taken off"
    rows = []
    for i, run in enumerate(r.sink_dropd, 1):
        how = f"sink, run {i}: dropd, drop → 200, {windows}"
        rows.append(_upload_row(r, run.upload, how, run.to_answer))
    for i, upload in enumerate(r.sink_sysadmin, 1):
        how = f"sink, run {i}: zip -6 && curl -F (token fetch included)"
        rows.append(_upload_row(r, upload, how, upload.seconds))
    return rows


def upload_table(results: list[SizeResult]) -> list[str]:
    """Whole-process time from a CSV to the server's answer, dropd against zip + curl: each
    run to the discard sink, then the one run of each to a sandbox."""
    rows, notes = [], []
    windows = f"{WINDOW_SECONDS:g} s windows"
    for r in results:
        d, s = r.dropd.upload, r.sysadmin
        rows += _sink_rows(r)
        how = f"sandbox: dropd, drop → receipt ({windows} included)"
        rows.append(_upload_row(r, d, how, d.seconds))
        how = f"sandbox: dropd, drop → 200, {windows} taken off"
        rows.append(_upload_row(r, d, how, r.dropd.to_answer))
        if s is None:
            rows.append([_size(r.size), f"zip -6 && curl -F: {r.sysadmin_note}", *["-"] * 7])
            continue
        how = "sandbox: zip -6 && curl -F (token fetch included)"
        rows.append(_upload_row(r, s, how, s.seconds))
        notes.append(_versus(r, s))
    header = ["batch", "how", "seconds", "MB/s", "ZIP MB", "ratio", "body read MB", "peak RSS MiB"]
    return [*_table([*header, "HTTP"], rows), "", *notes]


def _versus(r: SizeResult, s: Upload) -> str:
    """How dropd compares with zip + curl: to the sink (the medians), and to the sandbox."""
    mine = headline.median(headline.times(r.sink_dropd, headline.dropd_seconds))
    theirs = headline.median(headline.times(r.sink_sysadmin, headline.script_seconds))
    bigger = r.dropd.upload.zip_bytes / s.zip_bytes - 1
    return (
        f"- {_size(r.size)}: dropd is {_ratio((mine, theirs))} as fast as zip -6 && curl -F "
        f"from the CSV to the 200 (windows off), to the discard sink, medians of "
        f"{len(r.sink_dropd)} runs each (the target: 5x); "
        f"{_ratio((r.dropd.to_answer, s.seconds))} to the sandbox, once; its ZIP is "
        f"{bigger:+.1%} the size of zip -6's (target: at most +15%)."
    )


def _ratio(pair: Pair) -> str:
    dropd, admin = pair
    return f"{admin / dropd:.2f}x" if dropd and admin else "n/a"


def _step_rows(size: int, who: str, steps: list[Step]) -> list[list[str]]:
    return [[_size(size), who, s.name, _n(s.seconds, 2), _n(s.peak_mib)] for s in steps]


def steps_table(results: list[SizeResult]) -> list[str]:
    """Where the time and memory go, step by step: each contender's median run to the
    sink, then its run to the sandbox."""
    rows = []
    for r in results:
        dropd = headline.median_run(r.sink_dropd, headline.dropd_seconds)
        script = headline.median_run(r.sink_sysadmin, headline.script_seconds)
        if dropd is not None:
            rows += _step_rows(r.size, "dropd run, sink (median run)", dropd.upload.steps)
        if script is not None:
            rows += _step_rows(r.size, "zip -6 && curl -F, sink (median run)", script.steps)
        rows += _step_rows(r.size, "dropd run, sandbox", r.dropd.upload.steps)
        if r.sysadmin:
            rows += _step_rows(r.size, "zip -6 && curl -F, sandbox", r.sysadmin.steps)
    return _table(["batch", "who", "step", "seconds", "sender's peak RSS MiB"], rows)


def _compression_row(size: int, c: Compression) -> list[str]:
    if c.seconds is None or c.out_bytes is None:
        return [_size(size), c.engine, str(c.level or "-"), c.note, "", "", "", ""]
    ratio = size / c.out_bytes
    mbs = _rate(size, c.seconds)
    figures = [_n(c.seconds, 2), mbs, _n(c.out_bytes / MB), _n(ratio, 2), _n(c.peak_mib)]
    return [_size(size), c.engine, str(c.level), *figures]


def compression_table(results: list[SizeResult]) -> list[str]:
    """Compression alone, each engine its own process, file to file."""
    rows = []
    for r in results:
        rows += [_compression_row(r.size, c) for c in r.compressions]
        if r.sysadmin:
            zipped = r.sysadmin.steps[0]
            info_zip = Compression(
                "zip -6 (Info-ZIP)", 6, zipped.seconds, r.sysadmin.zip_bytes, zipped.peak_mib
            )
            rows.append(_compression_row(r.size, info_zip))
    header = ["batch", "engine", "level", "seconds", "MB/s", "output MB", "ratio", "peak RSS MiB"]
    return _table(header, rows)


def _load_note(load: tuple[float, float]) -> str:
    busy = max(load) > 0.5 * (os.cpu_count() or 1)
    warning = " Other processes shared the CPU: timings are slower and noisier." if busy else ""
    return f"Load average (1 min) at the start and end: {load[0]:.2f} / {load[1]:.2f}.{warning}"


def render(
    results: list[SizeResult],
    scaled: list[Any],
    scale_note: str,
    described: str,
    load: tuple[float, float],
) -> str:
    """The whole report, Markdown: the targets' figures, then the details; `scaled` the rows of
    bench/scale.py (or `scale_note`), `load` the 1-minute load average at start and end."""
    data = ", ".join(f"{_size(r.size)} ({r.rows:,} rows)" for r in results)
    lines = [
        "## Benchmark",
        "",
        f"Machine: {described} {_load_note(load)}",
        "",
        f"Data: SIS-shaped enrollments CSVs (`course_id,user_id,role,section_id,status`), {data};"
        f" page cache warm; to the discard sink {headline.ROUNDS} runs of each, alternating;"
        " the rest one run each. MB = 10^6 bytes, RSS in MiB.",
        "",
        "### The speed targets: dropd against the baseline",
        "",
        *summary.table(summary.figures(results, scaled)),
        *(["", f"Scale: {scale_note}"] if scale_note else []),
        "",
        "### Memory: peak RSS of each whole process",
        "",
        *memory_table(results),
        "",
        "### From the CSV to the server's answer, same file: a discard sink, and a sandbox",
        "",
        *upload_table(results),
        "",
        "### Where the time goes",
        "",
        *steps_table(results),
        "",
        "### Compression alone",
        "",
        *compression_table(results),
    ]
    return "\n".join(lines) + "\n"
