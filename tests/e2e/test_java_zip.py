"""dropd's ZIPs read by Java's own `ZipInputStream`, as the provider's server reads an upload.

An entry of 2 to 4 GiB is where Java versions part: Java 17 reads a Zip64 data descriptor
only once an entry's data passed 4 GiB, so an entry that size written as Zip64 fails there
("invalid entry size"). dropd writes such an entry without Zip64; this test builds one with
the real writer and has the machine's Java read it. It needs `java`/`javac` and about 3 GB
of free disk under the test's folder, and skips, saying which, without them.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from daemon.archive.writer import ZipEntry, build_zip

DRIVER = Path(__file__).parents[1] / "java" / "ReadZip.java"
BIG_BLOCKS = 2176  # of 1 MiB: 2.125 GiB, past 2 GiB and under 4
DISK_NEEDED = 3 << 30


def java_reads(zip_path: Path, classes: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["java", "-cp", str(classes), "ReadZip", str(zip_path)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.fixture
def classes(tmp_path: Path) -> Path:
    if shutil.which("java") is None or shutil.which("javac") is None:
        pytest.skip("needs java and javac: apt-get install default-jdk-headless")
    out = tmp_path / "classes"
    out.mkdir()
    subprocess.run(["javac", "-d", str(out), str(DRIVER)], check=True, timeout=300)
    return out


def write_big_csv(path: Path) -> int:
    rows = b"".join(b"C%06d,u%06d,student,S1,active\n" % (n, n) for n in range(40_000))
    block = (rows * (1 + (1 << 20) // len(rows)))[: 1 << 20]
    with path.open("wb") as out:
        for _ in range(BIG_BLOCKS):
            out.write(block)
    return path.stat().st_size


def test_java_reads_an_entry_of_2_to_4_gib_as_dropd_writes_it(
    tmp_path: Path, classes: Path
) -> None:
    if shutil.disk_usage(tmp_path).free < DISK_NEEDED:
        pytest.skip(f"needs {DISK_NEEDED >> 30} GiB free under {tmp_path} for a 2.1 GiB CSV")
    csv = tmp_path / "enrollments.csv"
    size = write_big_csv(csv)
    assert (2 << 30) < size < (4 << 30)
    built = build_zip([ZipEntry(csv, "enrollments.csv")], tmp_path / "upload.zip")
    csv.unlink()  # the disk it took
    read = java_reads(built.path, classes)
    assert read.returncode == 0, read.stderr
    assert read.stdout.split() == ["enrollments.csv", str(size)]


def test_java_reads_a_small_batch_as_dropd_writes_it(tmp_path: Path, classes: Path) -> None:
    names = ("users.csv", "élèves.csv", "message.properties")
    for index in range(len(names)):
        (tmp_path / f"src{index}").write_bytes(b"a,b\n" * (index + 1))
    entries = [ZipEntry(tmp_path / f"src{i}", name) for i, name in enumerate(names)]
    built = build_zip(entries, tmp_path / "upload.zip")
    read = java_reads(built.path, classes)
    assert read.returncode == 0, read.stderr
    assert read.stdout.splitlines() == ["users.csv 4", "élèves.csv 8", "message.properties 12"]
