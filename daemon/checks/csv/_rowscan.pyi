# The compiled row scanner (daemon/checks/csv/_rowscan.c); see daemon/checks/csv/check.py.
def plain_lines(
    data: bytes,
    start: int,
    end: int,
    width: int,
    rules: tuple[tuple[int, tuple[bytes, ...]], ...],
    status: int,
    /,
) -> tuple[int, int, list[tuple[int, int, int, int]], int]: ...
def first_bad_utf8(data: bytes, /) -> int: ...
