"""Hostile file names, ZIPs and record sizes, each case in a group of its own under one running
daemon against the real sandbox: where every file ends up, what the records and the sandbox
say about its name, what status.json says, and that the daemon is still running at the end.

Names are bytes: the kernel allows any byte but `/` and NUL, and a name that is not UTF-8
reaches Python (and dropd) as text with each undecodable byte as a lone surrogate.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import count
from pathlib import Path
from typing import Any

from harness import (
    DaemonProcess,
    SandboxProcess,
    dropd_command,
    errors,
    group_status,
    read,
    receipts,
    sandbox_environment,
    start_ready,
    toml_config,
    wait_for,
    write_secret,
    zipped,
)

H_USERS = b"user_id,login_id,first_name,last_name,email,status\n"
RECORD_LIMIT = 65_536  # bytes: a record, and a line of the log
MANY = 1_000  # files in the one big batch


def users(user: str) -> bytes:
    """A valid users CSV with one user of its own."""
    return H_USERS + f"{user},{user}@example.edu,A,L,{user}@example.edu,active\n".encode()


def zip_with_raw_name(raw: bytes, data: bytes) -> bytes:
    """A ZIP whose one entry is named by the bytes `raw` (not UTF-8), without the UTF-8 flag."""
    placeholder = b"Q" * len(raw)
    built = zipped([(placeholder.decode("ascii"), data)])
    assert built.count(placeholder) == 2  # the local header and the central directory
    built = built.replace(placeholder, raw)
    with zipfile.ZipFile(io.BytesIO(built)) as archive:
        [info] = archive.infolist()
        assert not info.flag_bits & 0x800, "the entry must not claim to be UTF-8"
        assert info.filename.encode("cp437") == raw
        assert archive.read(info) == data
    return built


def shown(name: bytes) -> str:
    """A name as a record keeps it: each byte that is not UTF-8 as `\\xNN`."""
    return name.decode("utf-8", "backslashreplace")


def hex_of(name: bytes) -> str | None:
    """`name_hex` of a record: the name's bytes in hex, only when they are not UTF-8."""
    try:
        name.decode("utf-8")
    except UnicodeDecodeError:
        return name.hex()
    return None


@dataclass(frozen=True)
class Case:
    """Files (names as bytes) to drop into a group's folder, and where they must end up."""

    files: dict[bytes, bytes]
    outcome: str  # "sent", "failed" or "left" (stays where it is, nothing uploaded)
    step: str = ""  # of error.json, and of the group's status
    says: tuple[str, ...] = ()  # exact texts in error.json's reason (or its problems)
    # The names the record must hold: shown name -> name_hex (None: no name_hex). Computed
    # from `files` when empty; written out where the exact text is the point.
    names: dict[str, str | None] = field(default_factory=dict)
    # The upload.zip the sandbox kept: entry name -> bytes. None: each file under its name.
    entries: dict[str, bytes] | None = None
    receipt_entries: dict[str, str] = field(default_factory=dict)  # receipt parts[].entries
    preload: bool = False  # in place before the daemon starts: all found by one scan
    check: Callable[[Path], list[str]] | None = None  # more about the record (its path)


def record_is_small(path: Path) -> list[str]:
    size = path.stat().st_size
    return [] if size < RECORD_LIMIT else [f"{path.name} is {size:,} bytes"]


def big_receipt(path: Path) -> list[str]:
    problems = record_is_small(path)
    record = read(path)
    listed, more = record["files"], record.get("files_not_listed")
    if not listed or not isinstance(more, int) or more <= 0:
        problems.append(f"files lists {len(listed)}, files_not_listed {more!r}")
    elif len(listed) + more != MANY:
        problems.append(f"{len(listed)} listed + {more} not listed != {MANY}")
    wanted = {f"u{i:04d}.csv" for i in range(MANY)}
    strays = [f["name"] for f in listed if f["name"] not in wanted]
    return problems + ([f"receipt lists {strays[:3]}"] if strays else [])


WIDE_HEADER = H_USERS.rstrip(b"\n") + b"".join(b",x%d" % i for i in range(100_000 - 6)) + b"\n"
assert WIDE_HEADER.count(b",") == 100_000 - 1
LONG_NAME = b"a" * 251 + b".csv"
assert len(LONG_NAME) == 255

CASES: dict[str, Case] = {
    "not_utf8_other": Case(
        {b"notes\xe9.txt": b"hello"},
        "failed",
        "intake",
        ('"notes\\xe9.txt"',),
        names={"notes\\xe9.txt": "6e6f746573e92e747874"},
    ),
    "not_utf8_csv": Case(
        {b"caf\xe9.csv": users("cafe")},
        "sent",
        names={"caf\\xe9.csv": "636166e92e637376"},
        entries={"caf%E9.csv": users("cafe")},
        receipt_entries={"caf\\xe9.csv": "caf%E9.csv"},
    ),
    "not_utf8_and_its_escape": Case(
        {b"caf\xe9.csv": users("accent"), b"caf%E9.csv": users("literal")},
        "sent",
        names={"caf\\xe9.csv": "636166e92e637376", "caf%E9.csv": None},
        entries={"caf%E9.csv": users("literal"), "caf%E9~2.csv": users("accent")},
        receipt_entries={"caf\\xe9.csv": "caf%E9~2.csv"},
        preload=True,
    ),
    "bytes_ff_fe": Case(
        {b"\xff\xfe.csv": users("fffe")},
        "sent",
        names={"\\xff\\xfe.csv": "fffe2e637376"},
        entries={"%FF%FE.csv": users("fffe")},
        receipt_entries={"\\xff\\xfe.csv": "%FF%FE.csv"},
    ),
    "trailing_space": Case({b"users.csv ": users("space")}, "failed", "intake", ('"users.csv "',)),
    "bell": Case({b"bell\x07.txt": b"ding"}, "failed", "intake", ('"bell\\u0007.txt"',)),
    "right_to_left_override": Case(
        {"x\u202ecsv.txt".encode(): users("rlo")}, "failed", "intake", ('"x\\u202ecsv.txt"',)
    ),
    "leading_dash": Case({b"-rf.csv": users("dash")}, "sent"),
    "name_of_255_bytes": Case({LONG_NAME: users("long")}, "sent"),
    "backslash": Case({b"a\\b.csv": users("backslash")}, "sent"),
    "japanese": Case(
        {"ユーザー一覧.csv".encode(): users("jp")},
        "sent",
        names={"ユーザー一覧.csv": None},
    ),
    "dotfile_csv": Case({b".hidden.csv": users("hidden")}, "left"),
    "upper_case_suffix": Case({b"USERS.CSV": users("upper")}, "sent"),
    "zip_same_name_twice": Case(
        {b"upload.zip": zipped([("users.csv", users("one")), ("users.csv", users("two"))])},
        "failed",
        "intake",
        ('"users.csv"', "base names"),
    ),
    "zip_same_base_name_in_two_folders": Case(
        {b"upload.zip": zipped([("a/users.csv", users("one")), ("b/users.csv", users("two"))])},
        "failed",
        "intake",
        ('"users.csv"', "base names"),
    ),
    "zip_entry_not_utf8": Case(
        {b"upload.zip": zip_with_raw_name(b"caf\xe9.csv", users("entry"))},
        "failed",
        "validate",
        ("not UTF-8", '"caf\\xe9.csv"'),
    ),
    "zip_named_not_utf8": Case(
        {b"caf\xe9.zip": zipped([("users.csv", users("zipped"))])},
        "sent",
        names={"caf\\xe9.zip": "636166e92e7a6970"},
        entries={"users.csv": users("zipped")},
    ),
    "header_of_100000_columns": Case(
        {b"users.csv": WIDE_HEADER},
        "failed",
        "validate",
        ("users.csv",),
        check=record_is_small,
    ),
    "a_thousand_files": Case(
        {b"u%04d.csv" % i: users(f"u{i:04d}") for i in range(MANY)},
        "sent",
        preload=True,
        check=big_receipt,
    ),
}


def put(staging: Path, folder: Path, name: bytes, content: bytes, serial: count[int]) -> None:
    """Drop a file as a careful writer does: written elsewhere on the same filesystem, then
    renamed in under its (bytes) name."""
    temporary = staging / f"{next(serial)}.tmp"
    temporary.write_bytes(content)
    os.rename(os.fsencode(temporary), os.fsencode(folder) + b"/" + name)


def listing(folder: Path) -> dict[bytes, bytes]:
    """The regular files directly in `folder`, by their bytes names."""
    root = os.fsencode(folder)
    found = {}
    for name in os.listdir(root):
        path = os.path.join(root, name)
        if os.path.isfile(path) and not os.path.islink(path):
            with open(path, "rb") as file:
                found[name] = file.read()
    return found


def uploads_of(sandbox: SandboxProcess, group: str) -> list[Path]:
    return [u for u in sandbox.uploads() if sandbox.request(u)["group"] == group]


def status_wanted(case: Case) -> dict[str, Any]:
    if case.outcome == "failed":
        return {"status": "Error", "step": case.step, "batches_failed": 1}
    return {"status": "Valid", "step": "", "batches_failed": 0, "files_waiting": 0}


def check_status(case: Case, state_dir: Path, group: str) -> list[str]:
    entry = group_status(state_dir, group) or {}
    wanted = status_wanted(case)
    got = {k: entry.get(k) for k in wanted}
    problems = [] if got == wanted else [f"status.json says {got}, wanted {wanted}"]
    if case.outcome == "failed" and not entry.get("reason"):
        problems.append("status.json gives no reason")
    if (case.outcome == "sent") != bool(entry.get("last_upload")):
        problems.append(f"status.json last_upload {entry.get('last_upload')!r}")
    return problems


def status_matches(state_dir: Path, group: str, wanted: dict[str, Any]) -> bool:
    entry = group_status(state_dir, group)
    return entry is not None and all(entry.get(k) == v for k, v in wanted.items())


def test_hostile_names_every_case_ends_where_it_should(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    folders = {name: tmp_path / "drop" / name for name in CASES}
    for folder in folders.values():
        folder.mkdir(parents=True)
    staging = tmp_path / "staging"
    staging.mkdir()
    serial = count()
    secret = write_secret(tmp_path / "test.secret", "secret-a-1234")
    state_dir = tmp_path / "state"
    config = toml_config(
        tmp_path,
        {"test": sandbox_environment(sandbox, "unit-a", secret)},
        {name: {"environment": "test", "folder": str(folders[name])} for name in CASES},
        settle_seconds=0.3,
        quiet_seconds=0.5,
        max_wait_seconds=3,
    )
    dates = {datetime.now(UTC).date().isoformat()}
    for name, case in CASES.items():
        if case.preload:
            for file_name, content in case.files.items():
                put(staging, folders[name], file_name, content, serial)
    daemon = start_ready(processes, config, tmp_path / "daemon.log")
    for name, case in CASES.items():
        if not case.preload:
            for file_name, content in case.files.items():
                put(staging, folders[name], file_name, content, serial)

    def all_done() -> bool:
        assert daemon.process.poll() is None, f"dropd exited:\n{daemon.text()[-3000:]}"
        for name, case in CASES.items():
            filed = {"sent": receipts, "failed": errors}.get(case.outcome)
            if filed is not None and not filed(folders[name]):
                return False
            wanted = status_wanted(case)["status"]  # the rest is checked after
            if not status_matches(state_dir, name, {"status": wanted}):
                return False
        return True

    wait_for(all_done, "every case filed and its group's status written")
    dates.add(datetime.now(UTC).date().isoformat())

    wrong = [
        f"{name}: {problem}"
        for name, case in CASES.items()
        for problem in check_case(case, folders[name], sandbox, name, dates)
        + check_status(case, state_dir, name)
    ]
    # The line goes on: a group whose last batch failed on a name sends the next one.
    group = "not_utf8_other"
    put(staging, folders[group], b"users.csv", users("after"), serial)
    [receipt] = wait_for(lambda: receipts(folders[group]), "the next batch after the table")
    if {p.name for p in receipt.parent.iterdir()} != {"users.csv", "receipt.json"}:
        wrong.append(f"after the table: {sorted(p.name for p in receipt.parent.iterdir())}")
    if len(uploads_of(sandbox, group)) != 1:
        wrong.append(f"after the table: {len(uploads_of(sandbox, group))} uploads")
    wait_for(
        lambda: status_matches(state_dir, group, {"status": "Valid", "batches_failed": 1}),
        "the group Valid again",
    )

    lengths = [len(line) for line in daemon.log_path.read_bytes().splitlines()]
    if not lengths or max(lengths) >= RECORD_LIMIT:
        wrong.append(f"log lines of {sorted(lengths)[-3:]} bytes")
    assert all(isinstance(e, dict) for e in daemon.events())  # every line is JSON
    assert daemon.process.poll() is None, "the daemon kept running through all of it"
    assert not wrong, "\n".join(wrong)


def check_case(
    case: Case, folder: Path, sandbox: SandboxProcess, group: str, dates: set[str]
) -> list[str]:
    """What is wrong with where a case's files ended up; empty when all is right."""
    problems: list[str] = []
    top = listing(folder)
    sent, failed = receipts(folder), errors(folder)
    uploaded = uploads_of(sandbox, group)
    if case.outcome == "left":
        if top != case.files:
            problems.append(f"top level holds {sorted(top)}, dropped {sorted(case.files)}")
        if sent or failed or uploaded:
            problems.append(f"filed or uploaded: {sent} {failed} {uploaded}")
        return problems
    if top:
        problems.append(f"left at the top level: {sorted(top)[:5]}")
    if case.outcome == "sent":
        if len(sent) != 1 or failed:
            return [*problems, f"{len(sent)} receipts, {len(failed)} errors"]
        [record_path] = sent
        if record_path.parent.parent.name not in dates:
            problems.append(f"sent under {record_path.parent.parent.name}, not {dates}")
        problems += check_upload(case, sandbox, uploaded)
        problems += check_receipt_entries(case, read(record_path))
    else:
        if len(failed) != 1 or sent:
            return [*problems, f"{len(sent)} receipts, {len(failed)} errors"]
        [record_path] = failed
        if uploaded:
            problems.append(f"uploaded although {case.step} failed")
        problems += check_error(case, read(record_path))
    kept = listing(record_path.parent)
    record_data = kept.pop(record_path.name.encode())
    if kept != case.files:
        missing = sorted(set(case.files) - set(kept))[:3]
        problems.append(f"beside the record: {len(kept)} files, missing {missing}, or changed")
    problems += check_names(case, json.loads(record_data))
    return problems + (case.check(record_path) if case.check else [])


def check_names(case: Case, record: dict[str, Any]) -> list[str]:
    """The record keeps every name losslessly: `name` as shown, `name_hex` when not UTF-8."""
    wanted = case.names or {shown(n): hex_of(n) for n in case.files}
    listed = {f["name"]: f for f in record["files"]}
    if "files_not_listed" in record:
        wanted = {n: h for n, h in wanted.items() if n in listed}
    elif set(listed) != set(wanted):
        return [f"record lists {sorted(listed)[:5]}, wanted {sorted(wanted)[:5]}"]
    problems = []
    for name, name_hex in wanted.items():
        if listed[name].get("name_hex") != name_hex:
            problems.append(f"{name!r}: name_hex {listed[name].get('name_hex')!r}, not {name_hex}")
        if name_hex is None and "name_hex" in listed[name]:
            problems.append(f"{name!r}: name_hex on a UTF-8 name")
    return problems


def check_upload(case: Case, sandbox: SandboxProcess, uploaded: list[Path]) -> list[str]:
    """One upload, whose ZIP holds the expected entries with the expected bytes, each kept by
    the sandbox under a name of its own."""
    if len(uploaded) != 1:
        return [f"{len(uploaded)} uploads"]
    [upload] = uploaded
    wanted = case.entries
    if wanted is None:
        wanted = {name.decode("utf-8"): data for name, data in case.files.items()}
    with zipfile.ZipFile(upload / "upload.zip") as archive:
        got = {info.filename: archive.read(info) for info in archive.infolist()}
    problems = []
    if got != wanted:
        problems.append(f"upload.zip holds {sorted(got)[:5]}, wanted {sorted(wanted)[:5]}")
    files = sandbox.request(upload)["files"]
    stored = [f["stored_as"] for f in files]
    if sorted(f["name"] for f in files) != sorted(wanted) or len(set(stored)) != len(stored):
        problems.append(f"the sandbox read {[(f['name'], f['stored_as']) for f in files][:5]}")
    for file in files:
        if (
            file["name"] in wanted
            and (upload / file["stored_as"]).read_bytes() != wanted[file["name"]]
        ):
            problems.append(f"the sandbox kept other bytes for {file['name']!r}")
    return problems


def check_receipt_entries(case: Case, record: dict[str, Any]) -> list[str]:
    """receipt.json maps each name that is not UTF-8 to the entry the server saw."""
    mapped: dict[str, str] = {}
    for part in record["parts"]:
        mapped.update(part.get("entries") or {})
    if mapped != case.receipt_entries:
        return [f"receipt entries {mapped}, wanted {case.receipt_entries}"]
    return []


def check_error(case: Case, record: dict[str, Any]) -> list[str]:
    problems = [] if record["step"] == case.step else [f"step {record['step']!r}"]
    texts = [record["reason"], *(str(p.get("message", "")) for p in record.get("problems", []))]
    text = "\n".join(texts)
    problems += [f"error.json lacks {w!r}: {text[:300]!r}" for w in case.says if w not in text]
    return problems


def test_hostile_names_check_command_shows_bytes_that_are_not_utf8(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    staging = tmp_path / "staging"
    staging.mkdir()
    files = {b"caf\xe9.csv": users("cafe"), b"notes\xe9.txt": b"hello"}
    serial = count()
    for name, content in files.items():
        put(staging, folder, name, content, serial)
    env = {k: v for k, v in os.environ.items() if k != "DROPD_CONFIG"}
    done = subprocess.run(
        [*dropd_command(), "check", str(folder)],
        capture_output=True,
        timeout=120,
        check=False,
        env=env,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert b"Traceback" not in out, out
    lines = done.stdout.decode("utf-8").splitlines()  # printable: raises on a raw 0xE9
    [cafe] = [line for line in lines if line.startswith("caf\\xe9.csv ")]
    [notes] = [line for line in lines if line.startswith("notes\\xe9.txt ")]
    assert "batch 1" in cafe, cafe
    assert "FAILS alone at step intake" in notes and '"notes\\xe9.txt"' in notes, notes
    assert listing(folder) == files, "a dry run moves nothing"
