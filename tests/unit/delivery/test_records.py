"""The records a batch leaves (daemon/delivery/records.py): their JSON keeps its fields, in
their order, whatever the types behind them."""

from __future__ import annotations

import json

from daemon.base.errors import Finding, Offence
from daemon.base.steps import Step
from daemon.delivery.records import BatchRecord, Failure, HeldRecord
from daemon.spool.manifest import (
    FileRecord,
    Part,
    PartAnswer,
    Release,
    Unpacked,
    UnpackedEntry,
    ZipSummary,
)

RECEIPT_KEYS = [
    "batch",
    "group",
    "group_name",
    "environment",
    "url",
    "files",
    "zip",
    "status",
    "answer",
    "parts",
    "resent_after_restart",
    "bom_removed",
    "attempts",
    "created",
    "first_attempt",
    "finished",
    "earlier_errors",
    "warnings",
    "released",
    "released_by",
    "released_at",
]
PART = Part(
    1,
    "upload.zip",
    ("users.csv", "message.properties"),
    {},
    300,
    "ab" * 32,
    True,
    bom_removed=("users.csv",),
)


def record(**changes: object) -> BatchRecord:
    fields: dict[str, object] = {
        "batch": "B1",
        "group": "music",
        "group_name": "Music",
        "environment": "test",
        "url": "https://api.example/rest/upload/Music/zip",
        "files": (FileRecord("users.csv", 51, "cd" * 32, "csv"),),
        "zip": ZipSummary(300, "ab" * 32, 1),
        "status": 200,
        "answer": {"message": "ok"},
        "parts": (PART.answered(PartAnswer(200, {"message": "ok"}, False)),),
        "attempts": 2,
        "created": "2026-11-23T08:00:00.000Z",
        "first_attempt": "2026-11-23T08:00:01.000Z",
        "finished": "2026-11-23T08:00:02.000Z",
        "earlier_errors": ({"step": "upload", "reason": "HTTP 503"},),
        "warnings": (Finding("users.csv", 2, "line 2: odd"),),
        "released": None,
    }
    fields.update(changes)
    return BatchRecord(**fields)  # type: ignore[arg-type]


def test_receipt_json_keeps_its_fields_in_order() -> None:
    data = record().to_json()
    assert list(data) == RECEIPT_KEYS
    assert data["files"] == [{"name": "users.csv", "bytes": 51, "sha256": "cd" * 32, "kind": "csv"}]
    assert data["zip"] == {"bytes": 300, "sha256": "ab" * 32, "parts": 1}
    assert data["parts"] == [
        {
            "number": 1,
            "files": ["users.csv", "message.properties"],
            "bytes": 300,
            "sha256": "ab" * 32,
            "custom_notification": True,
            "sent": True,
            "status": 200,
            "answer": {"message": "ok"},
            "resent_after_restart": False,
        }
    ]
    assert data["bom_removed"] == ["users.csv"] and data["resent_after_restart"] is False
    assert data["warnings"] == [{"file": "users.csv", "line": 2, "message": "line 2: odd"}]
    assert (data["released"], data["released_by"], data["released_at"]) == (False, None, None)


def test_error_json_adds_step_reason_and_problems_at_its_end() -> None:
    problems = (Finding("users.csv", 1, "bad header"),)
    failed = record(
        parts=(PART,),
        status=None,
        answer=None,
        released=Release("alice", "2026-11-23T07:00:00.000Z"),
        failure=Failure(Step.VALIDATE, "1 problem(s)", problems),
    )
    data = json.loads(json.dumps(failed.to_json()))
    assert list(data) == [*RECEIPT_KEYS, "step", "reason", "problems"]
    assert data["step"] == "validate" and data["reason"] == "1 problem(s)"
    assert data["problems"] == [{"file": "users.csv", "line": 1, "message": "bad header"}]
    assert data["parts"][0]["sent"] is False and data["parts"][0]["status"] is None
    assert data["parts"][0]["resent_after_restart"] is None, "no answer yet"
    assert data["released"] is True and data["released_by"] == "alice"
    without = record(failure=Failure(Step.UPLOAD, "HTTP 400")).to_json()
    assert list(without)[-2:] == ["step", "reason"], "problems only where the checks failed"


def test_held_record_keeps_what_release_needs() -> None:
    found = (Offence("users.csv", 200, 150, 50),)
    held = HeldRecord(record(status=None), found, 100, "2026-11-23T08:00:01.000Z")
    data = held.to_json()
    assert list(data) == [
        "batch",
        "group",
        "group_name",
        "environment",
        "files",
        "attempts",
        "created",
        "earlier_errors",
        "warnings",
        "step",
        "reason",
        "guard",
        "min_rows_for_guard",
        "held",
    ]
    assert data["batch"] == "B1" and data["attempts"] == 2
    assert data["earlier_errors"] == [{"step": "upload", "reason": "HTTP 503"}]
    assert data["step"] == "guard" and data["guard"] == [o.to_json() for o in found]
    assert data["min_rows_for_guard"] == 100 and data["held"] == "2026-11-23T08:00:01.000Z"
    assert "status" not in data and '"users.csv" has 150' in data["reason"]
    assert held.reason == data["reason"]


def test_receipt_of_a_dropped_zip_lists_its_entries_and_the_junk_left_out() -> None:
    unpacked = Unpacked(
        "export.zip",
        (
            UnpackedEntry("export/users.csv", "users.csv", 51),
            UnpackedEntry("export/courses.csv", "courses.csv", 60, converted_from="cp1252"),
        ),
        ("__MACOSX/export/._users.csv", "export/.DS_Store"),
    )
    data = json.loads(json.dumps(record(unpacked=unpacked).to_json()))
    assert list(data) == [*RECEIPT_KEYS, "unpacked"]
    assert data["unpacked"] == {
        "from": "export.zip",
        "entries": [
            {"entry": "export/users.csv", "name": "users.csv", "bytes": 51},
            {
                "entry": "export/courses.csv",
                "name": "courses.csv",
                "bytes": 60,
                "converted": {"from": "cp1252", "to": "utf-8"},
            },
        ],
        "left_out": ["__MACOSX/export/._users.csv", "export/.DS_Store"],
    }
    failed = record(unpacked=unpacked, failure=Failure(Step.INTAKE, "two users.csv")).to_json()
    assert list(failed)[-3:] == ["unpacked", "step", "reason"]
    assert "unpacked" not in record().to_json(), "only a batch dropped as a ZIP has it"
    found = (Offence("users.csv", 200, 150, 50),)
    held = HeldRecord(record(unpacked=unpacked), found, 100, "t")
    assert list(held.to_json())[-1] == "unpacked"
    assert held.to_json()["unpacked"] == data["unpacked"]
    assert "unpacked" not in HeldRecord(record(), found, 100, "t").to_json()


def test_receipt_says_per_file_what_its_copy_was_converted_from_and_escaped() -> None:
    files = (
        FileRecord("users.csv", 51, "cd" * 32, "csv", converted_from="cp1252"),
        FileRecord("message.properties", 40, "ef" * 32, "properties", escaped=3),
        FileRecord("courses.csv", 20, "01" * 32, "csv"),
    )
    data = json.loads(json.dumps(record(files=files).to_json()))
    users, properties, courses = data["files"]
    assert users["converted"] == {"from": "cp1252", "to": "utf-8"}
    assert "escaped" not in users
    assert properties["escaped"] == 3 and "converted" not in properties
    assert list(courses) == ["name", "bytes", "sha256", "kind"]  # only where it happened


def test_error_json_of_a_validate_failure_keeps_each_file_as_validation_read_it() -> None:
    checked = (
        FileRecord("users.csv", 51, "cd" * 32, "csv"),
        FileRecord("caf\udce9.csv", 3, "ab" * 32),
    )
    failure = Failure(Step.VALIDATE, "bad header", (), checked)
    data = record(failure=failure).to_json()
    assert list(data)[-4:] == ["step", "reason", "problems", "files_at_failure"]
    assert data["files_at_failure"] == [
        {"name": "users.csv", "bytes": 51, "sha256": "cd" * 32},
        {"name": "caf\\xe9.csv", "name_hex": "636166e92e637376", "bytes": 3, "sha256": "ab" * 32},
    ]
