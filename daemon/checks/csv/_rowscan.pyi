# The compiled row scanner (daemon/_rowscan.c); see csvfast.
def plain_lines(
    data: bytes,
    start: int,
    end: int,
    width: int,
    rules: tuple[tuple[int, tuple[bytes, ...]], ...],
    status: int,
    /,
) -> tuple[int, int, list[tuple[int, int, int]]] | None: ...
