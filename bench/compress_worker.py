"""One compression, run as its own process so it is timed and measured whole.

`python compress_worker.py ENGINE LEVEL SOURCE TARGET`: with ENGINE `zipfile`, a one-entry
ZIP the standard library's way (as dropd wrote one before the speed work); `dropd`, the ZIP
`daemon.archive.writer.build_zip` writes (its engine, CRC-32, SHA-256 of the CSV and the ZIP,
fsync; LEVEL is ignored); with a module name (`zlib`, `isal.isal_zlib`, `zlib_ng.zlib_ng`),
raw deflate, the data of a ZIP entry, with that module's zlib-compatible compressobj.
`python compress_worker.py engine` prints the engine dropd picks here.
"""

from __future__ import annotations

import importlib
import sys
import zipfile
from pathlib import Path

CHUNK = 1 << 20
RAW_DEFLATE = -15  # wbits for a deflate stream with no zlib header, as ZIP method 8 stores it


def zip_file(source: Path, target: Path, level: int) -> None:
    """A one-entry ZIP at `level`, as dropd's archive module writes one."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as archive:
        archive.write(source, source.name)


def raw_deflate(module_name: str, source: Path, target: Path, level: int) -> None:
    """Raw deflate of `source` with `module_name`'s zlib-compatible compressobj."""
    module = importlib.import_module(module_name)
    compressor = module.compressobj(level, 8, RAW_DEFLATE)
    with open(source, "rb") as data, open(target, "wb") as out:
        while chunk := data.read(CHUNK):
            out.write(compressor.compress(chunk))
        out.write(compressor.flush())


def dropd_zip(source: Path, target: Path) -> None:
    """The ZIP dropd builds for a batch of this one CSV."""
    from daemon.archive.writer import ZipEntry, build_zip

    build_zip([ZipEntry(source, source.name, strip_bom=True)], target)


def main(argv: list[str]) -> int:
    if argv == ["engine"]:
        from daemon.archive.writer import DEFLATE

        print(f"{DEFLATE.name} level {DEFLATE.level}")
        return 0
    engine, level, source, target = argv[0], int(argv[1]), Path(argv[2]), Path(argv[3])
    if engine == "dropd":
        dropd_zip(source, target)
    elif engine == "zipfile":
        zip_file(source, target, level)
    else:
        raw_deflate(engine, source, target, level)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
