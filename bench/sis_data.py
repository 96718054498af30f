"""A SIS-shaped enrollments CSV of a chosen size, seeded, written fast.

A block of a few thousand varied rows (courses of 20 to 120 people, sorted by course as SIS
exports come, mostly students, a few teachers, TAs and observers, mostly active) is made
once; the file repeats it with a block counter in every course and section id, so no two
blocks are alike. A block is far longer than deflate's 32 KiB window, so the repetition
does not flatter any compressor.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

HEADER = b"course_id,user_id,role,section_id,status\n"
_COUNTER = b"#####"  # stands for the block number in the template
_TERMS = ("2025FA", "2026SP", "2026SU")
_SUBJECTS: tuple[str, ...] = ("ANTH", "ART", "BIOL", "CHEM", "CSCI", "ECON", "EDUC", "ENG")
_SUBJECTS += ("FINA", "FREN", "GEOG", "HIST", "INFO", "JOUR", "MATH", "MUS", "PHIL", "PHYS")
_SUBJECTS += ("POLS", "PSY", "SOC", "SPAN", "STAT", "THTR")
_SECTIONS = ("LEC", "LAB1", "LAB2", "DIS1", "DIS2", "ONL")
_ROLES = (("student", 0.93), ("ta", 0.03), ("observer", 0.02), ("designer", 0.02))
_STATUSES = (("active", 0.95), ("completed", 0.025), ("deleted", 0.015), ("inactive", 0.01))
_COURSES_PER_BLOCK = 60


def _pick(rng: random.Random, weighted: tuple[tuple[str, float], ...]) -> str:
    values, weights = zip(*weighted, strict=True)
    return str(rng.choices(values, weights)[0])


def _course_rows(rng: random.Random, number: int, people: list[str]) -> list[str]:
    """The enrollments of one course: its teachers, then the rest in section order."""
    term, subject = rng.choice(_TERMS), rng.choice(_SUBJECTS)
    course = f"{term}-{subject}-{rng.choice('ACEHLMPSX')}{rng.randint(100, 499)}-#####{number:02d}"
    sections = rng.sample(_SECTIONS, rng.randint(1, 3))
    rows = [f"{course},{rng.choice(people)},teacher,{course}-{sections[0]},active"]
    for _ in range(rng.randint(20, 120)):
        section = f"{course}-{rng.choice(sections)}"
        role, status = _pick(rng, _ROLES), _pick(rng, _STATUSES)
        rows.append(f"{course},{rng.choice(people)},{role},{section},{status}")
    return rows


def block_template(seed: int) -> bytes:
    """A few thousand rows in which `#####` stands for the block number."""
    rng = random.Random(seed)
    people = [f"{rng.randint(2_000_000_000, 2_999_999_999)}" for _ in range(30_000)]
    rows: list[str] = []
    for number in range(_COURSES_PER_BLOCK):
        rows += _course_rows(rng, number, people)
    return ("\n".join(rows) + "\n").encode("ascii")


def write_enrollments(path: Path, size: int, seed: int = 7) -> int:
    """Write an enrollments CSV of about `size` bytes (whole rows) and fsync it; its rows."""
    return write_blocks(path, HEADER, block_template(seed), size)


def write_blocks(path: Path, header: bytes, template: bytes, size: int) -> int:
    """Write `header`, then `template` again and again with `#####` the block number, to
    about `size` bytes of whole rows, and fsync it; the rows written."""
    written, rows, block = len(header), 0, 0
    with open(path, "wb") as out:
        out.write(header)
        while written < size:
            data = template.replace(_COUNTER, b"%05d" % (block % 100_000))
            if written + len(data) > size:
                data = data[: data.rfind(b"\n", 0, size - written) + 1]
                if not data:
                    break
            out.write(data)
            written, rows, block = written + len(data), rows + data.count(b"\n"), block + 1
        out.flush()
        # Flushed to disk now, so writeback does not run during the timings that follow.
        os.fsync(out.fileno())
    return rows
