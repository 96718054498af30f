"""Compression alone: each deflate engine on the whole CSV, each as a process of its own."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from procs import run_measured

WORKER = Path(__file__).with_name("compress_worker.py")
# (worker engine, levels, label, module to find first or None).
ENGINES = (
    ("zipfile", (6, 1), "stdlib zipfile", None),
    ("isal.isal_zlib", (0, 1, 2, 3), "python-isal (raw deflate)", "isal"),
    ("zlib_ng.zlib_ng", (1, 2, 6), "zlib-ng (raw deflate)", "zlib_ng"),
    ("dropd", (None,), "dropd's build_zip", None),
)


@dataclass(frozen=True)
class Compression:
    """One compressor on the whole file, as its own process."""

    engine: str
    level: int | None
    seconds: float | None = None
    out_bytes: int | None = None
    peak_mib: float | None = None
    note: str = ""


def compressions(work: Path, source: Path) -> list[Compression]:
    """Each engine and level of ENGINES on the whole file, each as its own process."""
    rows = []
    for engine, levels, label, module in ENGINES:
        if module is not None and importlib.util.find_spec(module) is None:
            rows.append(Compression(label, None, note="not installed"))
            continue
        if engine == "dropd":
            label = f"dropd's build_zip: {_dropd_engine()}, CRC-32, SHA-256 of CSV and ZIP"
        rows += [_compress(work, source, engine, level, label) for level in levels]
    return rows


def _dropd_engine() -> str:
    """The deflate engine dropd's archive module picked in this interpreter."""
    done = subprocess.run(
        [sys.executable, str(WORKER), "engine"], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def _compress(work: Path, source: Path, engine: str, level: int | None, label: str) -> Compression:
    target = work / f"compressed-{engine}-{level}"
    args = [sys.executable, str(WORKER), engine, str(level or 0), str(source), str(target)]
    done = run_measured(args)
    if done.returncode != 0:
        return Compression(label, level, note=f"failed (exit {done.returncode})")
    size = target.stat().st_size
    target.unlink()
    return Compression(label, level, done.seconds, size, done.peak_mib)
