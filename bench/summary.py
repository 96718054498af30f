"""The targets' figures in one table: dropd against the baseline, the ratio, the target, met?"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import headline
from scenarios import DropdRun, SizeResult

MB = 1_000_000
TARGET_RSS_MIB = 80_000_000 / (1 << 20)  # the target's "under 80 MB", in MiB
SPEED_UP, ZIP_GROWTH, VALIDATION_MBS, UPLOAD_SHARE = 5.0, 0.15, 400.0, 0.5
BIG = 300 * MB  # "a 300 MB+ CSV" from drop to the 200
GB = 1000 * MB  # "validation of a 1 GB CSV"


@dataclass(frozen=True)
class Figure:
    figure: str
    dropd: str
    baseline: str = "-"
    ratio: str = "-"
    target: str = "-"
    met: bool | None = None


def _n(value: float | None, digits: int = 1, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}{unit}"


def _size(size: int) -> str:
    return f"{size / MB:,.0f} MB"


def _judged(size: int, met: bool, minimum: int = BIG) -> bool | None:
    # A target about larger files: context only. Files are cut a few bytes short of a size.
    return met if size >= minimum * 0.99 else None


def upload_figures(r: SizeResult) -> list[Figure]:
    """Drop to the 200 against `zip -6 && curl -F`: to the discard sink (the medians, judged),
    to a sandbox once (information), and the ZIPs' sizes."""
    s, d = r.sysadmin, r.dropd
    if s is None:
        return [Figure(f"{_size(r.size)} CSV: drop → 200", "-", r.sysadmin_note)]
    mine = headline.times(r.sink_dropd, headline.dropd_seconds)
    theirs = headline.times(r.sink_sysadmin, headline.script_seconds)
    ratio = _ratio(headline.median(mine), headline.median(theirs))
    once = _ratio(d.to_answer, s.seconds)
    growth = d.upload.zip_bytes / s.zip_bytes - 1
    return [
        Figure(
            f"{_size(r.size)} CSV: drop → 200, windows taken off, to a discard sink "
            f"(median of {len(mine)} runs each, alternating; in brackets fastest to slowest)",
            f"{_n(headline.median(mine), 2, ' s')} ({headline.spread(mine)})",
            f"zip -6 && curl -F: {_n(headline.median(theirs), 2, ' s')} "
            f"({headline.spread(theirs)})",
            _n(ratio, 2, "x"),
            f"≥ {SPEED_UP:g}x",
            _judged(r.size, ratio is not None and ratio >= SPEED_UP),
        ),
        Figure(
            f"{_size(r.size)} CSV: drop → 200, windows taken off, with the sandbox's unzip "
            "and check, once (information)",
            _n(d.to_answer, 2, " s"),
            f"zip -6 && curl -F: {_n(s.seconds, 2, ' s')}",
            _n(once, 2, "x"),
        ),
        Figure(
            f"{_size(r.size)} CSV: ZIP size",
            _n(d.upload.zip_bytes / MB, 1, " MB"),
            f"zip -6: {_n(s.zip_bytes / MB, 1, ' MB')}",
            f"{growth:+.1%}",
            f"≤ +{ZIP_GROWTH:.0%}",
            growth <= ZIP_GROWTH,
        ),
    ]


def _with_helper(run: DropdRun) -> float | None:
    peak = run.upload.peak_mib
    return peak + run.helper_peak_mib if peak is not None and run.helper_peak_mib else peak


def _helper_note(run: DropdRun) -> str:
    if not run.helper_peak_mib or run.upload.peak_mib is None:
        return ""
    return f": {run.upload.peak_mib:.1f} + child processes {run.helper_peak_mib:.1f}"


def _ratio(dropd: float | None, baseline: float | None) -> float | None:
    """The baseline's seconds over dropd's: above 1, dropd is faster."""
    return baseline / dropd if dropd and baseline else None


def memory_figures(results: list[SizeResult]) -> list[Figure]:
    """dropd's peak RSS per batch size: the daemon's, plus its child processes' where any
    ran (part of the service: judged together; dropd starts none now)."""
    peaks = [_with_helper(r.dropd) for r in results]
    rows = [
        Figure(
            f"peak RSS of dropd run, {_size(r.size)} batch (VmHWM{_helper_note(r.dropd)})",
            _n(peak, 1, " MiB"),
            target=f"< 80 MB ({TARGET_RSS_MIB:.1f} MiB), flat",
            met=peak is not None and peak < TARGET_RSS_MIB,
        )
        for r, peak in zip(results, peaks, strict=True)
    ]
    known = [p for p in peaks if p is not None]
    if len(known) > 1:
        spread = _n(max(known) - min(known), 1, " MiB")
        rows.append(Figure("peak RSS of dropd run: spread across the batch sizes", spread))
    return rows


def validation_figures(r: SizeResult) -> list[Figure]:
    v = r.validated
    if v is None:
        return [Figure(f"validation, {_size(r.size)} CSV", "failed: see stderr")]
    helper = f" + child processes {_n(v.helper_peak_mib, 0, ' MiB')}" if v.helper_peak_mib else ""
    return [
        Figure(
            f"validation, {_size(r.size)} CSV, strict, as dropd runs it (peak RSS)",
            f"{_n(v.strict, 0, ' MB/s')} ({_n(v.peak_mib, 0, ' MiB')}{helper})",
            ratio=_n(v.strict / VALIDATION_MBS, 2, "x of target"),
            target=f"≥ {VALIDATION_MBS:g} MB/s, flat memory",
            met=_judged(r.size, v.strict >= VALIDATION_MBS, GB),
        ),
        Figure(
            f"validation, {_size(r.size)} CSV, on one core: strict / strict in Python only (no "
            "row scanner) / no row-value warnings / off",
            f"{_n(v.one_core, 0)} / {_n(v.python_only, 0)} / {_n(v.no_values, 0)} / "
            f"{_n(v.off, 0)} MB/s",
        ),
    ]


def throughput_figures(r: SizeResult) -> list[Figure]:
    u = r.upload
    if u is None:
        return []
    dropd = u.zip_bytes / u.dropd / MB
    curl = u.zip_bytes / u.curl / MB if u.curl else None
    share = dropd / curl if curl else None
    return [
        Figure(
            f"upload over loopback, the same {_n(u.zip_bytes / MB, 0, ' MB')} ZIP "
            f"(median of {u.repeats})",
            _n(dropd, 0, " MB/s"),
            f"curl -F: {_n(curl, 0, ' MB/s')}" if curl else u.note,
            _n(share, 2, "x"),
            f"≥ {UPLOAD_SHARE:g}x curl -F",
            share is not None and share >= UPLOAD_SHARE,
        )
    ]


def deflate_figures(r: SizeResult) -> list[Figure]:
    mine = next((c for c in r.compressions if c.engine.startswith("dropd")), None)
    if mine is None or mine.seconds is None or r.sysadmin is None:
        return []
    zipped = r.sysadmin.steps[0].seconds
    return [
        Figure(
            f"{_size(r.size)} CSV: compression alone ({mine.engine.split(': ')[1].split(',')[0]})",
            _n(r.size / mine.seconds / MB, 0, " MB/s"),
            f"zip -6: {_n(r.size / zipped / MB, 0, ' MB/s') if zipped else 'n/a'}",
            _n(zipped / mine.seconds, 1, "x") if zipped else "-",
        )
    ]


def scale_figures(rows: Iterable[Any]) -> list[Figure]:
    """bench/scale.py's rows (figure, target, measured, met), as they come."""
    return [Figure(row.figure, row.measured, target=row.target, met=row.met) for row in rows]


def figures(results: list[SizeResult], scaled: Iterable[Any]) -> list[Figure]:
    rows: list[Figure] = []
    for r in results:
        rows += upload_figures(r)
    rows += memory_figures(results)
    for r in results:
        rows += validation_figures(r) + throughput_figures(r) + deflate_figures(r)
    return rows + scale_figures(scaled)


def table(rows: list[Figure]) -> list[str]:
    met = {True: "yes", False: "**no**", None: ""}
    lines = ["| figure | dropd | baseline | ratio | target | met? |", "|---|---|---|---|---|---|"]
    lines += [
        f"| {f.figure} | {f.dropd} | {f.baseline} | {f.ratio} | {f.target} | {met[f.met]} |"
        for f in rows
    ]
    return lines
