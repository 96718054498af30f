"""The guard against the real daemon and sandbox: a batch that deletes too much is held in
held/, nothing of it sent, while the group's later batches and the other groups go on."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

from guardfiles import enrollments_csv, held_ids, held_records, users_csv
from harness import (
    USERS,
    DaemonProcess,
    SandboxProcess,
    drop,
    read,
    receipts,
    sandbox_environment,
    start_ready,
    toml_config,
    uploads_by_batch,
    wait_for,
    write_secret,
)

Processes = list[SandboxProcess | DaemonProcess]

# (file, content, held?) in the order dropped, each its own batch; the defaults apply:
# max_deleted_percent 50, min_rows_for_guard 100.
CASES: list[tuple[str, bytes, bool]] = [
    ("users.csv", users_csv(200, 101), True),  # 50.5%: over the share
    ("users.csv", users_csv(200, 99), False),  # 49.5%: under it
    ("enrollments.csv", enrollments_csv(200, 100), False),  # exactly 50%: not more than it
    ("enrollments.csv", enrollments_csv(300, 151), True),  # 50.33%
    ("enrollments.csv", enrollments_csv(99, 99), False),  # all deleted, but under 100 rows
    ("enrollments.csv", enrollments_csv(100, 51), True),  # 100 rows: the guard looks
]


def groups_config(tmp_path: Path, sandbox: SandboxProcess, **groups: dict[str, Any]) -> Path:
    """A config whose groups (by key, with their extra settings) each have a folder."""
    secret = write_secret(tmp_path / "test.secret", "secret-a-1234")
    tables = {}
    for key, extra in groups.items():
        folder = tmp_path / "drop" / key
        folder.mkdir(parents=True)
        tables[key] = {"environment": "test", "folder": str(folder), **extra}
    environments = {"test": sandbox_environment(sandbox, "unit-a", secret)}
    return toml_config(tmp_path, environments, tables)


def ended(folder: Path) -> int:
    """Batches that ended in sent/ or held/."""
    return len(receipts(folder)) + len(held_records(folder))


def drop_one(folder: Path, name: str, content: bytes) -> str:
    """Drop a file as a batch of its own; wait for its end: `held` or `sent`."""
    before = ended(folder)
    drop(folder, name, content)
    wait_for(lambda: ended(folder) > before, f"{name} sent or held")
    assert ended(folder) == before + 1
    return "held" if held_records(folder) and _newest(folder) == "held" else "sent"


def _newest(folder: Path) -> str:
    newest = max([*held_records(folder), *receipts(folder)], key=lambda p: p.parent.name)
    return "held" if newest.name == "held.json" else "sent"


def test_guard_holds_each_file_over_the_share_and_sends_the_rest(
    tmp_path: Path, sandbox: SandboxProcess, processes: Processes
) -> None:
    config = groups_config(tmp_path, sandbox, music={}, art={"max_deleted_percent": 0})
    music, art = tmp_path / "drop" / "music", tmp_path / "drop" / "art"
    daemon = start_ready(processes, config, tmp_path / "daemon.log")

    outcomes = [drop_one(music, name, content) for name, content, _ in CASES]
    assert outcomes == ["held" if held else "sent" for _, _, held in CASES]

    # Nothing of a held batch went up; every other batch did, once.
    sent_ids = sorted(r.parent.name for r in receipts(music))
    assert sorted(uploads_by_batch(sandbox)) == sent_ids
    assert not set(held_ids(music)) & set(uploads_by_batch(sandbox))

    first = read(held_records(music)[0])
    assert first["group"] == "music" and first["step"] == "guard"
    assert first["guard"] == [
        {"file": "users.csv", "rows": 200, "deleted": 101, "share": 50.5, "limit": 50.0}
    ]
    assert first["min_rows_for_guard"] == 100
    assert [f["name"] for f in first["files"]] == ["users.csv"]
    assert first["files"][0]["bytes"] == len(CASES[0][1])
    assert first["created"] and first["held"] and first["batch"] == held_ids(music)[0]
    assert '"users.csv" has 101 of its 200 rows deleted (50.5%)' in first["reason"]
    # The command to run names the config this dropd runs with, never a placeholder.
    assert f"`dropd release --config {config} music {first['batch']}`" in first["reason"]
    assert (held_records(music)[0].parent / "users.csv").read_bytes() == CASES[0][1]
    event = daemon.wait_event("batch_held", batch=first["batch"])
    assert event["group"] == "music" and event["guard"] == first["guard"]

    # Held batches keep the group in Error, step guard, while its later batches go up.
    shown = daemon.wait_status("music", status="Error", step="guard", batches_held=3)
    assert '"enrollments.csv" has 51 of its 100 rows deleted (51%)' in shown["reason"]
    assert "2 more held batches" in shown["reason"]

    # The guard off: a file deleting everything goes up, while music holds its batches.
    drop(art, "enrollments.csv", enrollments_csv(200, 200))
    [receipt] = wait_for(lambda: receipts(art), "art's batch sent")
    assert read(receipt)["released"] is False
    assert held_records(art) == []
    daemon.wait_status("art", status="Valid")
    assert daemon.stop() == 0


def test_guard_with_validation_off_and_in_a_dropped_zip(
    tmp_path: Path, sandbox: SandboxProcess, processes: Processes
) -> None:
    config = groups_config(tmp_path, sandbox, music={"validation": "off"})
    music = tmp_path / "drop" / "music"
    daemon = start_ready(processes, config, tmp_path / "daemon.log")

    assert drop_one(music, "enrollments.csv", enrollments_csv(200, 150)) == "held"
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("users.csv", USERS)
        archive.writestr("enrollments.csv", enrollments_csv(400, 300))
    assert drop_one(music, "export.zip", packed.getvalue()) == "held"
    assert drop_one(music, "users.csv", users_csv(200, 20)) == "sent"

    zipped = read(held_records(music)[1])
    assert zipped["guard"] == [
        {"file": "enrollments.csv", "rows": 400, "deleted": 300, "share": 75.0, "limit": 50.0}
    ]
    assert [f["name"] for f in zipped["files"]] == ["export.zip"]
    assert len(sandbox.uploads()) == 1
    assert daemon.stop() == 0
