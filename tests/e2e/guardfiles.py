"""Files for the guard's end-to-end tests: SIS-shaped CSVs with a chosen share of deletions,
and what a group folder's held/ holds."""

from __future__ import annotations

from pathlib import Path

USERS_HEADER = b"user_id,login_id,first_name,last_name,email,status\n"
ENROLLMENTS_HEADER = b"course_id,user_id,role,section_id,status\n"
SECTIONS = b"section_id,course_id,name,status\nS1,C1,Section One,active\n"


def users_csv(rows: int, deleted: int) -> bytes:
    """A valid users CSV of `rows` data rows, the first `deleted` of them deleted."""
    lines = [
        f"u{i},u{i}@example.edu,First{i},Last{i},u{i}@example.edu,"
        f"{'deleted' if i < deleted else 'active'}\n"
        for i in range(rows)
    ]
    return USERS_HEADER + "".join(lines).encode()


def enrollments_csv(rows: int, deleted: int) -> bytes:
    """A valid enrollments CSV of `rows` data rows, the first `deleted` of them deleted."""
    lines = [
        f"C{i % 7},u{i},student,S{i % 7},{'deleted' if i < deleted else 'active'}\n"
        for i in range(rows)
    ]
    return ENROLLMENTS_HEADER + "".join(lines).encode()


def held_records(folder: Path) -> list[Path]:
    """The held.json of every batch in the group folder's held/, oldest first."""
    return sorted((folder / "held").glob("*/held.json"))


def held_ids(folder: Path) -> list[str]:
    return [path.parent.name for path in held_records(folder)]
