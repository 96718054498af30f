"""How fast the reference CSV reader (`daemon.base.opencsv`) reads a users.csv: run on demand.

    .venv/bin/python bench/reader_speed.py [--size-mb 200] [--seed 7] [--quoted 0.02]

Writes a SIS-shaped users.csv of `--size-mb` (names with accents, a share `--quoted` of
lines with a quoted field, one in a thousand with a backslash) in a temporary folder, then
reads it from a warm page cache in chunks of 1 MiB three ways: bytes to text only
(`decode`), the records in bulk (`read_rows`, what the checks use), and one `Record` per
row (`read_records`), each the best of `--repeats` runs. Prints MB/s (10^6 bytes a
second), the peak RSS, which stays flat whatever the size, and the share of the CPU the
host took meanwhile (bench/steal.py): compare figures only where it is low.
"""

from __future__ import annotations

import argparse
import random
import resource
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from steal import Steal

from daemon.base.opencsv import PlainRows, decode, read_records, read_rows

CHUNK = 1 << 20
HEADER = "user_id,login_id,first_name,last_name,email,status\n"
FIRST = ("Ann", "Bo", "Chloé", "Dmitri", "Émile", "Farah", "Gus", "Hélène", "Ivan", "Jun")
LAST = ("Lee", "Núñez", "Smith", "Okafor", "García", "Müller", "Kowalski", "Tanaka")
STATUS = ("active",) * 20 + ("suspended", "deleted")


def write_users(path: Path, size: int, seed: int, quoted: float) -> int:
    rng = random.Random(seed)
    written = 0
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(HEADER)
        number = 0
        while written < size:
            lines = []
            for _ in range(10_000):
                number += 1
                first, last = rng.choice(FIRST), rng.choice(LAST)
                login = f"{first[0].lower()}{number}@example.edu"
                if rng.random() < quoted:
                    last = f'"{last}, Jr."'
                elif rng.random() < 0.001:
                    last = "Art\\Design"
                status = rng.choice(STATUS)
                lines.append(f"u{number:08d},{login},{first},{last},{login},{status}\r\n")
            block = "".join(lines)
            out.write(block)
            written += len(block.encode())
    return path.stat().st_size


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as source:
        while chunk := source.read(CHUNK):
            yield chunk


def _decode_only(path: Path) -> int:
    return sum(len(text) for text in decode(_chunks(path)))


def _bulk(path: Path) -> int:
    rows = 0
    for part in read_rows(decode(_chunks(path))):
        rows += part.count if isinstance(part, PlainRows) else 1
    return rows


def _per_record(path: Path) -> int:
    return sum(1 for _ in read_records(decode(_chunks(path))))


def _time(read: Callable[[Path], int], path: Path) -> tuple[float, int]:
    started = time.perf_counter()
    count = read(path)
    return time.perf_counter() - started, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quoted", type=float, default=0.02)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each (the best)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "users.csv"
        size = write_users(path, args.size_mb * 1_000_000, args.seed, args.quoted)
        _decode_only(path)  # warm the page cache
        print(f"users.csv: {size / 1e6:,.0f} MB, {args.quoted:.0%} of lines quoted")
        with Steal() as steal:
            for name, read in (
                ("decode only", _decode_only),
                ("read_rows (bulk)", _bulk),
                ("read_records", _per_record),
            ):
                runs = [_time(read, path) for _ in range(args.repeats)]
                seconds, count = min(runs)
                print(f"{name:18} {size / 1e6 / seconds:7.0f} MB/s  ({count:,})")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MB; {steal}")


if __name__ == "__main__":
    main()
