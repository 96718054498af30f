"""`dropd run` as a real process against `dropd sandbox`: files in, ZIPs up, originals filed."""

from __future__ import annotations

import os
import stat
import time
import zipfile
from pathlib import Path

from harness import (
    COURSES,
    USERS,
    DaemonProcess,
    SandboxProcess,
    drop,
    drop_folders,
    errors,
    group_status,
    music_group,
    read,
    receipts,
    sandbox_environment,
    second_sandbox,
    start_daemon,
    start_ready,
    toml_config,
    wait_for,
    write_secret,
)

ENROLLMENTS = b"course_id,user_id,role,section_id,status\nC1,g1,student,,active\n"
MESSAGE = b"sender=a@example.edu\nsubject=Welcome\nbody=Hello there\n"


def zip_entries(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_run_two_groups_on_two_environments_each_get_one_zip(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    box_a, (box_b, beta) = sandbox, second_sandbox(tmp_path, processes)
    music, art = drop_folders(tmp_path, "music", "art").values()
    environments = {
        "test": sandbox_environment(box_a, "unit-a", write_secret(tmp_path / "a", "secret-a-1234")),
        "beta": beta,
    }
    groups = {
        "music": {"environment": "test", "folder": str(music)},
        "art": {"environment": "beta", "folder": str(art), "group_name": "fine-arts"},
    }
    settle, quiet = 1.0, 1.0
    config = toml_config(tmp_path, environments, groups, settle_seconds=settle, quiet_seconds=quiet)
    daemon = start_ready(processes, config, tmp_path / "daemon.log")

    dropped = time.monotonic()
    sent_music = {"users.csv": USERS, "enrollments.csv": ENROLLMENTS, "message.properties": MESSAGE}
    sent_art = {"courses.csv": COURSES, "users.csv": USERS}
    for name, content in sent_music.items():
        drop(music, name, content)
    for name, content in sent_art.items():
        drop(art, name, content)
    wait_for(lambda: receipts(music) and receipts(art), "both receipts")
    elapsed = time.monotonic() - dropped
    print(
        f"drop to receipt for two groups: {elapsed:.2f} s "
        f"(settle {settle:g} + quiet {quiet:g} + 1 = {settle + quiet + 1:g} s)"
    )

    for box, folder, files, group_name, custom in (
        (box_a, music, sent_music, "music", True),
        (box_b, art, sent_art, "fine-arts", False),
    ):
        assert len(box.uploads()) == 1, f"{group_name}: expected one upload"
        upload = box.uploads()[0]
        request = box.request(upload)
        assert request["group"] == group_name
        assert request["endpoint"] == "zip"
        assert (request["form"].get("customUsersNotification") == "true") is custom
        assert zip_entries(upload / "upload.zip") == files
        [receipt] = receipts(folder)
        record = read(receipt)
        assert record["status"] == 200
        assert record["answer"]["message"].startswith("The files are being processed")
        assert sorted(f["name"] for f in record["files"]) == sorted(files)
        assert {p.name for p in receipt.parent.iterdir()} == {*files, "receipt.json"}
        for name, content in files.items():
            assert (receipt.parent / name).read_bytes() == content
        assert not [p for p in folder.iterdir() if p.is_file()], "nothing left behind"
        assert receipt.parent.parent.name == record["finished"][:10]
    assert daemon.stop() == 0


def test_run_takes_files_present_at_startup(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    config, folder = music_group(tmp_path, sandbox)
    drop(folder, "users.csv", USERS)
    daemon = start_daemon(config, tmp_path / "daemon.log")
    processes.append(daemon)
    [receipt] = wait_for(lambda: receipts(folder), "a receipt")
    assert (receipt.parent / "users.csv").read_bytes() == USERS
    assert zip_entries(sandbox.uploads()[0] / "upload.zip") == {"users.csv": USERS}


def test_run_rejected_upload_goes_to_failed_with_the_servers_answer(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    # Validation off: the unknown header reaches the server, whose own answer is kept.
    config, folder = music_group(tmp_path, sandbox, {"validation": "off"})
    daemon = start_daemon(config, tmp_path / "daemon.log")
    processes.append(daemon)
    bad = b"id,name\n1,x\n"
    drop(folder, "people.csv", bad)
    [error] = wait_for(lambda: errors(folder), "an error.json")
    record = read(error)
    assert record["step"] == "upload"
    assert record["status"] == 400
    assert "Error parsing uploaded files" in record["reason"]
    assert record["answer"]["fileErrors"], "the server's fileErrors are kept"
    assert (error.parent / "people.csv").read_bytes() == bad
    assert sandbox.uploads() == []
    daemon.wait_event("batch_failed", step="upload")


def test_run_unknown_file_fails_alone_at_intake(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    config, folder = music_group(tmp_path, sandbox)
    daemon = start_daemon(config, tmp_path / "daemon.log")
    processes.append(daemon)
    drop(folder, "notes.txt", b"hello")
    drop(folder, "users.csv", USERS)
    [error] = wait_for(lambda: errors(folder), "an error.json")
    record = read(error)
    assert record["step"] == "intake"
    assert "notes.txt" in record["reason"]
    assert (error.parent / "notes.txt").read_bytes() == b"hello"
    [receipt] = wait_for(lambda: receipts(folder), "the users batch's receipt")
    assert {f["name"] for f in read(receipt)["files"]} == {"users.csv"}


def test_run_group_stays_in_error_after_an_intake_failure_until_a_batch_is_sent(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    config, folder = music_group(tmp_path, sandbox)
    daemon = start_daemon(config, tmp_path / "daemon.log")
    processes.append(daemon)
    state = tmp_path / "state"
    drop(folder, "notes.txt", b"hello")
    wait_for(lambda: errors(folder), "an error.json")
    drop(folder, "users.csv.part", USERS)  # a file that is never taken: scans go on
    time.sleep(1.0)
    status = wait_for(lambda: group_status(state, "music"), "music's status")
    assert (status["status"], status["step"]) == ("Error", "intake")
    assert status["batches_failed"] == 1

    os.rename(folder / "users.csv.part", folder / "users.csv")
    wait_for(lambda: receipts(folder), "the receipt")
    valid = daemon.wait_status("music", status="Valid")
    assert valid["batches_failed"] == 1, "failed batches stay counted whatever the status"


def test_run_done_marker_travels_and_is_not_uploaded(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    config, folder = music_group(tmp_path, sandbox, settle_seconds=3600)
    start_ready(processes, config, tmp_path / "daemon.log")
    drop(folder, "users.csv", USERS)
    drop(folder, "users.csv.done", b"")
    [receipt] = wait_for(lambda: receipts(folder), "a receipt (the marker, not settle)")
    assert (receipt.parent / "users.csv.done").exists()
    assert zip_entries(sandbox.uploads()[0] / "upload.zip") == {"users.csv": USERS}


def test_run_polling_mode_picks_up_files(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    config, folder = music_group(tmp_path, sandbox, poll_seconds=0.5)
    start_ready(processes, config, tmp_path / "daemon.log")
    drop(folder, "courses.csv", COURSES)
    wait_for(lambda: receipts(folder), "a receipt in polling mode")


def test_run_never_logs_the_secret_or_the_token(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    config, folder = music_group(tmp_path, sandbox)
    daemon = start_daemon(config, tmp_path / "daemon.log")
    processes.append(daemon)
    drop(folder, "users.csv", USERS)
    [receipt] = wait_for(lambda: receipts(folder), "a receipt")
    assert daemon.stop() == 0
    cache = tmp_path / "state" / "tokens" / "test.json"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.parent.stat().st_mode) == 0o700
    token = read(cache)["access_token"]
    written = [
        daemon.text(),
        receipt.read_text(encoding="utf-8"),
        (tmp_path / "state" / "status.json").read_text(encoding="utf-8"),
    ]
    for text in written:
        assert "secret-a-1234" not in text
        assert token not in text
    events = daemon.events()
    assert {"timestamp", "level", "event"} <= set(events[0])
    sent = next(e for e in events if e["event"] == "batch_sent")
    assert sent["group"] == "music" and sent["batch"] == receipt.parent.name


def test_run_console_log_format_is_for_people(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    config, folder = music_group(tmp_path, sandbox, log_format="console")
    daemon = start_daemon(config, tmp_path / "daemon.log")
    processes.append(daemon)
    drop(folder, "users.csv", USERS)
    wait_for(lambda: receipts(folder), "a receipt")
    wait_for(lambda: "batch_sent" in daemon.text(), "a console batch_sent line")
    line = next(t for t in daemon.text().splitlines() if "batch_sent" in t)
    assert not line.startswith("{") and "group=music" in line


def test_run_bad_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "dropd.toml"
    config.write_text('[daemon]\nsettle_seconds = "ten"\n', encoding="utf-8")
    daemon = start_daemon(config, tmp_path / "daemon.log")
    assert daemon.process.wait(timeout=60) == 2
    assert "daemon.settle_seconds" in daemon.text()


def test_run_stops_cleanly_on_sigterm(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    config, _folder = music_group(tmp_path, sandbox)
    daemon = start_daemon(config, tmp_path / "daemon.log")
    daemon.wait_event("daemon_ready")
    assert daemon.stop() == 0
    daemon.wait_event("daemon_stopped") if daemon.process.poll() is None else None
    assert any(e["event"] == "daemon_stopped" for e in daemon.events())
    assert not os.path.exists(tmp_path / "drop" / "music" / "failed")
