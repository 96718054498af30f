"""Bad and odd inputs, each in a group of its own under one running daemon: where every file
ends up, at which step, and what the reason says."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness import (
    COURSES,
    USERS,
    DaemonProcess,
    SandboxProcess,
    drop,
    errors,
    music_group,
    read,
    receipts,
    sandbox_environment,
    start_ready,
    toml_config,
    wait_for,
    write_secret,
    zipped,
)

from daemon.base.crashpoints import LOSE_EVENTS_ENV, RESCAN_ENV

H_USERS = b"user_id,login_id,first_name,last_name,email,status\n"
H_ENROLL = b"course_id,user_id,role,section_id,status\n"
MESSAGE = b"sender=a@example.edu\nsubject=Welcome\nbody=Hello\n"


@dataclass(frozen=True)
class Case:
    """Files to drop into a group's folder, and where they must end up."""

    files: dict[str, bytes]
    outcome: str  # "sent", "failed" or "left" (stays where it is, nothing uploaded)
    step: str = ""
    words: tuple[str, ...] = ()  # in error.json's reason or problems (lower case)
    setup: Callable[[Path], None] | None = None  # for what is not a plain file
    receipt_words: tuple[str, ...] = field(default=())  # in receipt.json
    group: dict[str, str] = field(default_factory=dict)  # the group's own settings


def link_to_secret(folder: Path) -> None:
    secret = folder.parent / "secret.txt"
    secret.write_text("the root password")
    (folder / "users.csv").symlink_to(secret)


def fifo(folder: Path) -> None:
    os.mkfifo(folder / "users.csv")


def sub_folder(folder: Path) -> None:
    (folder / "archive.csv").mkdir()


CASES: dict[str, Case] = {
    "header_only": Case({"users.csv": H_USERS}, "sent"),
    "crlf": Case({"users.csv": USERS.replace(b"\n", b"\r\n")}, "sent"),
    "bom": Case({"users.csv": b"\xef\xbb\xbf" + USERS}, "sent", receipt_words=("users.csv",)),
    "quoted_comma_and_newline": Case(
        {
            "users.csv": H_USERS
            + b'g1,a@example.edu,"Ada, Countess","Love\nlace",a@example.edu,active\n'
        },
        "sent",
    ),
    "name_with_spaces_and_unicode": Case({"Usuários da música.csv": USERS}, "sent"),
    "blank_line_at_end": Case({"users.csv": USERS + b"\n"}, "sent"),
    "properties_with_escapes": Case(
        {
            "users.csv": USERS,
            "message.properties": (
                b"sender=a@example.edu\nsubject=Caf\\u00e9\nbody=Hi \\\n  there\n"
            ),
        },
        "sent",
    ),
    "zip_ready_made": Case({"upload.zip": zipped({"users.csv": USERS})}, "sent"),
    "empty_file": Case({"users.csv": b""}, "failed", "validate", ("users.csv", "empty")),
    "ragged_row": Case(
        {"users.csv": H_USERS + b"g1,a@example.edu,Ada,a@example.edu,active\n"},
        "failed",
        "validate",
        ("users.csv", "line 2"),
    ),
    "unterminated_quote": Case(
        {"users.csv": H_USERS + b'g1,a@example.edu,"Ada,L,a@example.edu,active\n'},
        "failed",
        "validate",
        ("users.csv", "quote"),
    ),
    "latin1": Case(
        {"users.csv": H_USERS + b"g1,a@example.edu,Jos\xe9,L,a@example.edu,active\n"},
        "failed",
        "validate",
        ("users.csv", "utf-8", "line 2"),
    ),
    "nul_bytes": Case(
        {"users.csv": H_USERS + b"g1,a@example.edu,A\x00,L,a@example.edu,active\n"},
        "failed",
        "validate",
        ("users.csv", "nul", "line 2"),
    ),
    "unknown_header": Case(
        {"people.csv": b"id,name\n1,x\n"}, "failed", "validate", ("people.csv", "header")
    ),
    "header_with_spaces": Case(
        {"users.csv": b"user_id, login_id,first_name,last_name,email,status\n"},
        "failed",
        "validate",
        ("users.csv", "header", "space"),
    ),
    "header_other_case": Case(
        {"users.csv": b"User_ID,login_id,first_name,last_name,email,status\n"},
        "failed",
        "validate",
        ("users.csv", "header", "case"),
    ),
    "properties_without_users": Case(
        {"courses.csv": COURSES, "message.properties": MESSAGE},
        "failed",
        "validate",
        ("message.properties", "users"),
    ),
    "properties_blank_body": Case(
        {"users.csv": USERS, "message.properties": b"sender=a@example.edu\nsubject=Hi\nbody=   \n"},
        "failed",
        "validate",
        ("message.properties", "body"),
    ),
    "properties_bad_escape": Case(
        {
            "users.csv": USERS,
            "message.properties": b"sender=a@example.edu\nsubject=\\u00zz\nbody=x\n",
        },
        "failed",
        "validate",
        ("message.properties",),
    ),
    "zip_with_parent_path": Case(
        {"upload.zip": zipped({"../users.csv": USERS})},
        "failed",
        "validate",
        ("leaves the archive",),
    ),
    "zip_bomb": Case(
        {"upload.zip": zipped({"users.csv": H_USERS + b"\n" * (16 << 20)})},
        "failed",
        "validate",
        ("bomb",),
    ),
    "zip_nested": Case(
        {"upload.zip": zipped({"inner.zip": zipped({"users.csv": USERS})})},
        "failed",
        "validate",
        ("inner.zip",),
    ),
    "zip_not_a_zip": Case({"upload.zip": b"PK\x03\x04 broken"}, "failed", "validate", ("zip",)),
    "unknown_type": Case({"notes.txt": b"hello"}, "failed", "intake", ("notes.txt",)),
    "one_bad_file_fails_the_whole_batch": Case(
        {"users.csv": USERS, "enrollments.csv": H_ENROLL + b"C1,g1\n"},
        "failed",
        "validate",
        ("enrollments.csv", "line 2"),
    ),
    "symlink_to_a_secret": Case({}, "left", setup=link_to_secret),
    "fifo": Case({}, "left", setup=fifo),
    "folder_named_csv": Case({}, "left", setup=sub_folder),
    "temporary_names": Case(
        {"users.csv.part": USERS, "~users.csv": USERS, ".users.csv": USERS}, "left"
    ),
    "orphan_marker": Case({"courses.csv.done": b""}, "left"),
    "name_with_a_newline": Case({"users\nlist.csv": USERS}, "sent"),
    "required_marker_missing": Case(
        {"users.csv": USERS}, "left", group={"done_markers": "required"}
    ),
    "required_marker_present": Case(
        {"users.csv": USERS, "users.csv.done": b""}, "sent", group={"done_markers": "required"}
    ),
    "off_marker_travels": Case(
        {"users.csv": USERS, "users.done": b""}, "sent", group={"done_markers": "off"}
    ),
}
# Row values the server would take but email about later: warnings, the batch still goes.
WARNINGS = {
    "unknown_status": H_USERS + b"g1,a@example.edu,A,L,a@example.edu,enabled\n",
    "login_not_email": H_USERS + b"g1,ada,A,L,a@example.edu,active\n",
    "blank_line_inside": H_USERS + b"\n" + b"g1,a@example.edu,A,L,a@example.edu,active\n",
}


def test_intake_table_every_case_ends_where_it_should(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    names = [*CASES, *WARNINGS]
    folders = {name: tmp_path / "drop" / name for name in names}
    for folder in folders.values():
        folder.mkdir(parents=True)
    secret = write_secret(tmp_path / "test.secret", "secret-a-1234")
    groups = {
        name: {
            "environment": "test",
            "folder": str(folders[name]),
            **(CASES[name].group if name in CASES else {}),
        }
        for name in names
    }
    config = toml_config(
        tmp_path,
        {"test": sandbox_environment(sandbox, "unit-a", secret)},
        groups,
        settle_seconds=0.5,
        quiet_seconds=0.5,
        max_wait_seconds=3,
    )
    daemon = start_ready(processes, config, tmp_path / "daemon.log")
    for name, case in CASES.items():
        if case.setup:
            case.setup(folders[name])
        for file_name, content in case.files.items():
            drop(folders[name], file_name, content)
    for name, content in WARNINGS.items():
        drop(folders[name], "users.csv", content)

    ending = {n: c for n, c in CASES.items() if c.outcome != "left"}
    wait_for(
        lambda: (
            all(
                (receipts if c.outcome == "sent" else errors)(folders[n]) for n, c in ending.items()
            )
            and all(receipts(folders[n]) for n in WARNINGS)
        ),
        "every sent or failed case to be filed",
    )
    daemon.wait_event("marker_orphaned", group="orphan_marker", file="courses.csv.done")
    uploaded = {sandbox.request(u)["group"] for u in sandbox.uploads()}

    wrong = [f"{n}: {w}" for n, c in CASES.items() for w in check_case(c, folders[n], uploaded, n)]
    for name in WARNINGS:
        [receipt] = receipts(folders[name])
        if not read(receipt)["warnings"]:
            wrong.append(f"{name}: no warning in the receipt")
    assert not wrong, "\n".join(wrong)
    assert daemon.process.poll() is None, "the daemon kept running through all of it"
    assert any(e["event"] == "row_warning" for e in daemon.events())


def check_case(case: Case, folder: Path, uploaded: set[str], group: str) -> list[str]:
    """What is wrong with where a case's files ended up; empty when all is right."""
    if case.outcome == "sent":
        [receipt] = receipts(folder)
        names = {p.name for p in receipt.parent.iterdir()} - {"receipt.json"}
        problems = [] if names == set(case.files) else [f"sent {names}, dropped {set(case.files)}"]
        text = receipt.read_text(encoding="utf-8").lower()
        problems += [f"receipt lacks {w!r}" for w in case.receipt_words if w.lower() not in text]
        return problems + ([] if group in uploaded else ["not uploaded"])
    if case.outcome == "failed":
        [error] = errors(folder)
        record = read(error)
        text = (record["reason"] + " " + str(record.get("problems", ""))).lower()
        problems = [] if record["step"] == case.step else [f"step {record['step']}"]
        problems += [f"error.json lacks {w!r}: {text[:300]}" for w in case.words if w not in text]
        for file_name, content in case.files.items():
            if (error.parent / file_name).read_bytes() != content:
                problems.append(f"{file_name} not kept as dropped in failed/")
        return problems + ([f"uploaded although {case.step} failed"] if group in uploaded else [])
    problems = [] if group not in uploaded else ["uploaded although it should be left alone"]
    problems += [f"{n} moved" for n in case.files if not (folder / n).exists()]
    if case.setup and not any(p.name in ("users.csv", "archive.csv") for p in folder.iterdir()):
        problems.append("the special file was moved")
    return problems + ([] if not receipts(folder) and not errors(folder) else ["filed"])


def test_intake_a_slow_writer_is_never_taken_early(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    folder = tmp_path / "drop" / "music"
    folder.mkdir(parents=True)
    secret = write_secret(tmp_path / "test.secret", "secret-a-1234")
    config = toml_config(
        tmp_path,
        {"test": sandbox_environment(sandbox, "unit-a", secret)},
        {"music": {"environment": "test", "folder": str(folder)}},
        settle_seconds=1.0,
        quiet_seconds=0.5,
    )
    start_ready(processes, config, tmp_path / "daemon.log")
    rows = [b"g%d,u%d@example.edu,A,L,u%d@example.edu,active\n" % (i, i, i) for i in range(12)]
    done = threading.Event()

    def write_slowly() -> None:
        # Written in place, a row every 0.3 s for several seconds: never 1 s unchanged.
        with open(folder / "users.csv", "wb") as out:
            out.write(H_USERS)
            for row in rows:
                out.flush()
                time.sleep(0.3)
                out.write(row)
        done.set()

    writer = threading.Thread(target=write_slowly)
    writer.start()
    [receipt] = wait_for(lambda: receipts(folder), "the slow file's receipt")
    writer.join()
    assert done.is_set()
    assert (receipt.parent / "users.csv").read_bytes() == H_USERS + b"".join(rows)
    assert len(sandbox.uploads()) == 1


def test_intake_a_file_whose_events_were_lost_still_goes_up(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    # Every inotify event is dropped (as in an overflow, or a write from another NFS host):
    # only the periodic full rescan can find the file.
    config, folder = music_group(tmp_path, sandbox)
    hooks = {LOSE_EVENTS_ENV: "1", RESCAN_ENV: "2"}
    start_ready(processes, config, tmp_path / "daemon.log", env=hooks)
    drop(folder, "users.csv", USERS)
    [receipt] = wait_for(lambda: receipts(folder), "the rescan to find the file")
    assert (receipt.parent / "users.csv").read_bytes() == USERS
