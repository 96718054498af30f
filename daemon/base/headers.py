"""The headers the provider's server knows, by kind of file: its table of formats.

The server types a CSV by its header's fields joined with commas, compared exactly (case,
order, no spaces); each kind has its required columns, and optional ones it takes in order
after them. Both the checks and the sandbox read uploads by this one table.
"""

from __future__ import annotations

__all__ = ["HEADERS", "HEADER_KEYS", "KINDS", "OPTIONAL_COLUMNS", "REQUIRED_COLUMNS"]

KINDS = ("users", "courses", "sections", "enrollments", "listings")
# Each kind's required columns, in order; courses come with term_id and without it.
REQUIRED_COLUMNS: dict[str, tuple[tuple[str, ...], ...]] = {
    "users": (("user_id", "login_id", "first_name", "last_name", "email", "status"),),
    "courses": (
        ("course_id", "short_name", "long_name", "account_id", "term_id", "status"),
        ("course_id", "short_name", "long_name", "account_id", "status"),
    ),
    "sections": (("section_id", "course_id", "name", "status"),),
    "enrollments": (("course_id", "user_id", "role", "section_id", "status"),),
    "listings": (("user_id", "listing_id"),),
}
# The optional columns after them: any of them, in this order.
OPTIONAL_COLUMNS: dict[str, tuple[str, ...]] = {
    "users": ("service",),
    "courses": ("start_date", "end_date", "blueprint_course_id"),
    "sections": ("start_date", "end_date"),
    "enrollments": ("limit_section_privileges",),
    "listings": ("send_email",),
}


def _with_optional(base: tuple[str, ...], optional: tuple[str, ...]) -> list[tuple[str, ...]]:
    """`base` followed by every in-order subset of `optional` (the server lists each one)."""
    headers = [base]
    for column in optional:
        headers += [(*header, column) for header in headers]
    return headers


HEADERS: dict[tuple[str, ...], str] = {
    header: kind
    for kind, bases in REQUIRED_COLUMNS.items()
    for base in bases
    for header in _with_optional(base, OPTIONAL_COLUMNS[kind])
}
# The server types a file by its header's fields joined with commas, compared exactly.
HEADER_KEYS: dict[str, str] = {",".join(header): kind for header, kind in HEADERS.items()}
