"""What dropd writes for people to read (receipt.json, error.json, held.json, status.json):
redacted as the logs are, and small whatever the input.

A server's answer can echo the bearer token, a header can have 100,000 columns, a batch can
hold 10,000 files. So a record is redacted (known secrets, anything shaped like a
credential), the bytes of names that are not UTF-8 are written as `\\xNN`, long texts are
cut, long lists are cut with the count of what was left out beside them (`files` keeps its
first entries and `files_not_listed` says how many more there were), and all is cut further
until its JSON is under `RECORD_LIMIT` bytes.
"""

from __future__ import annotations

import json
from typing import Any

from daemon.base.log import REDACTOR
from daemon.base.names import shown

RECORD_LIMIT = 64 * 1024
TEXT_LIMIT = 2000  # characters of one text (a server's page, a reason)
LIST_LIMIT = 200  # entries of one list (files, problems, earlier errors)
_FLOOR = (100, 5)  # the least a record is cut to: texts, lists
_NOT_LISTED = "_not_listed"


def for_people(record: dict[str, Any], limit: int = RECORD_LIMIT) -> dict[str, Any]:
    """`record` redacted, with texts and lists cut until its JSON is under `limit` bytes."""
    # Cut generously first, so that redaction reads little; then redact, which must see a
    # secret whole (the cuts below fall well inside what was kept here).
    clean: dict[str, Any] = REDACTOR.redact(_cut_dict(record, 4 * TEXT_LIMIT, LIST_LIMIT))
    texts, lists = TEXT_LIMIT, LIST_LIMIT
    while True:
        shaped = _cut_dict(clean, texts, lists)
        if _size(shaped) < limit or (texts, lists) == _FLOOR:
            return shaped
        texts, lists = max(_FLOOR[0], texts // 2), max(_FLOOR[1], lists // 2)


def _size(data: Any) -> int:
    return len(json.dumps(data, ensure_ascii=False).encode("utf-8", "backslashreplace"))


def _cut(value: Any, texts: int, lists: int) -> Any:
    if isinstance(value, str):
        return cut_text(shown(value), texts)
    if isinstance(value, dict):
        return _cut_dict(value, texts, lists)
    if isinstance(value, list | tuple):
        return [_cut(item, texts, lists) for item in value[:lists]]
    return value


def _cut_dict(data: dict[str, Any], texts: int, lists: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key.endswith(_NOT_LISTED) and key.removesuffix(_NOT_LISTED) in data:
            continue  # counted again below, with what an earlier cut left out
        out[key] = _cut(value, texts, lists)
        if isinstance(value, list | tuple):
            earlier = data.get(f"{key}{_NOT_LISTED}")
            left_out = max(0, len(value) - lists) + (earlier if isinstance(earlier, int) else 0)
            if left_out:
                out[f"{key}{_NOT_LISTED}"] = left_out
    return out


def cut_text(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, saying how many more there were."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit:,} more characters)"
