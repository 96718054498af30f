"""Records for people (daemon/records.py): redacted as the logs are, and small."""

from __future__ import annotations

import json
import os

from daemon.base.log import REDACTOR
from daemon.base.records import RECORD_LIMIT, for_people


def size(record: object) -> int:
    return len(json.dumps(record, ensure_ascii=False).encode("utf-8"))


def test_a_record_holds_no_known_secret_nor_a_bearer_token() -> None:
    REDACTOR.add("tok-1234567890-secret")
    record = {
        "reason": "the server refused: Bearer abc.def.ghi was wrong",
        "answer": {"message": "echo tok-1234567890-secret", "access_token": "anything"},
    }
    shown = json.dumps(for_people(record))
    assert "tok-1234567890-secret" not in shown and "abc.def.ghi" not in shown
    assert "anything" not in shown


def test_a_long_list_keeps_its_first_entries_and_says_how_many_more() -> None:
    files = [{"name": f"u{n:04d}.csv", "bytes": 60, "sha256": "ab" * 32} for n in range(1000)]
    record = for_people({"batch": "B1", "files": files})
    assert size(record) < RECORD_LIMIT
    assert len(record["files"]) + record["files_not_listed"] == 1000
    assert record["files"][0] == files[0], "the entries kept are whole"


def test_any_input_stays_under_the_limit() -> None:
    huge = "c," * 200_000
    problems = [{"file": "users.csv", "line": n, "message": huge} for n in range(500)]
    history = [{"reason": huge, "problems": problems} for _ in range(20)]
    record = for_people({"reason": huge, "problems": problems, "earlier_errors": history})
    assert size(record) < RECORD_LIMIT
    assert record["reason"].endswith("more characters)")


def test_a_name_that_is_not_utf8_becomes_text_a_person_can_read() -> None:
    record = for_people({"files": [{"name": os.fsdecode(b"caf\xe9.csv")}]})
    assert record["files"][0]["name"] == "caf\\xe9.csv"
    json.dumps(record, ensure_ascii=False).encode("utf-8")


def test_a_small_record_is_kept_as_it_is() -> None:
    record = {"batch": "B1", "files": [{"name": "users.csv", "bytes": 3}], "status": 200}
    assert for_people(record) == record
