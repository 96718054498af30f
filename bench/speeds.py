"""The speeds measured beside the uploads, each in processes of their own: validation of the
CSV (`validate_speed.py`) and upload throughput against `curl -F` (`upload_speed.py`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from upload_speed import UploadSpeed, measure

VALIDATE = Path(__file__).with_name("validate_speed.py")


@dataclass(frozen=True)
class Validated:
    """`validate_batch` on the CSV: strict as dropd runs it (the best of two runs), strict
    on one thread, the same in Python only (the reference reader, no row scanner), on one
    thread without the row-value warnings, and `off`, in MB/s; the peak RSS (MiB) of the
    process that ran them all; `helper_peak_mib` is always None now (validate_speed.py
    writes it so: dropd starts no helper process)."""

    strict: float
    one_core: float
    python_only: float
    no_values: float
    off: float
    peak_mib: float
    helper_peak_mib: float | None
    rows: int
    deleted: int


def validation(source: Path) -> Validated | None:
    """validate_speed.py's figures on `source`; None if it failed."""
    done = subprocess.run(
        [sys.executable, str(VALIDATE), "--file", str(source), "--json", "--repeats", "2"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        print(done.stderr, file=sys.stderr)
        return None
    figures = json.loads(done.stdout.splitlines()[-1])
    ways = figures["ways"]
    return Validated(
        ways["strict"]["mb_per_s"],
        ways["strict, one core"]["mb_per_s"],
        ways["strict, one core, Python only"]["mb_per_s"],
        ways["strict, one core, no row-value warnings"]["mb_per_s"],
        ways["off"]["mb_per_s"],
        figures["peak_mib"],
        figures["helper_peak_mib"],
        ways["strict"]["rows"],
        ways["strict"]["deleted"],
    )


def upload_throughput(zip_path: Path, repeats: int = 5) -> UploadSpeed:
    """dropd's upload and `curl -F` sending the ZIP at `zip_path` to a sink that only reads."""
    return measure(zip_path, repeats)
