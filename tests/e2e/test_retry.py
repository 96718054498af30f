"""`dropd retry`: a failed batch goes back in line unchanged; refusals say why."""

from __future__ import annotations

from pathlib import Path

from harness import (
    USERS,
    DaemonProcess,
    SandboxProcess,
    assert_refused,
    drop,
    errors,
    failed_and_sent,
    music_group,
    read,
    receipts,
    run_dropd,
    script_sandbox,
    start_daemon,
    wait_for,
)

FORBIDDEN = {
    "status": 403,
    "body": {"message": "User (unit-a) is not authorized to upload files", "fileErrors": None},
}


def test_retry_sends_a_failed_batch_unchanged(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    config, folder = music_group(tmp_path, sandbox)
    script_sandbox(sandbox, [FORBIDDEN])
    daemon = start_daemon(config, tmp_path / "daemon.log")
    processes.append(daemon)
    drop(folder, "users.csv", USERS)
    [error] = wait_for(lambda: errors(folder), "the batch to fail with 403")
    batch = error.parent.name
    assert read(error)["status"] == 403

    done = run_dropd("retry", "--config", str(config), "music", batch)
    assert done.returncode == 0, done.stderr
    assert batch in done.stdout and "back in line" in done.stdout
    assert not (folder / "failed" / batch).exists()

    [receipt] = wait_for(lambda: receipts(folder), "the retried batch's receipt")
    assert receipt.parent.name == batch
    assert (receipt.parent / "users.csv").read_bytes() == USERS
    assert not (receipt.parent / "error.json").exists()
    record = read(receipt)
    assert record["status"] == 200
    assert record["attempts"] == 2
    assert [e["status"] for e in record["earlier_errors"]] == [403]
    daemon.wait_event("batch_adopted", batch=batch)


def test_retry_refuses_what_is_not_a_failed_batch(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    config, folder = music_group(tmp_path, sandbox)
    daemon = start_daemon(config, tmp_path / "daemon.log")
    processes.append(daemon)
    error, receipt = failed_and_sent(folder, "users.csv", USERS)

    cases = {
        "20990101T000000.000000Z-beef": "there is no failed batch",
        receipt.parent.name: "was sent",
        error.parent.name: "step intake",
    }
    assert_refused("retry", config, "music", cases)
    assert (folder / "failed" / error.parent.name / "notes.txt").exists(), "nothing moved"

    done = run_dropd("retry", "--config", str(config), "nosuch", "x")
    assert done.returncode == 2 and 'no group "nosuch"' in done.stderr


BAD_HEADER = b"user_id,login_id,first_name,last_name,email\nu1,a@x.edu,A,B,a@x.edu\n"


def test_retry_of_a_validate_failure_wants_the_files_fixed_and_status_counts_it_out(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    config, folder = music_group(tmp_path, sandbox)
    daemon = start_daemon(config, tmp_path / "daemon.log")
    processes.append(daemon)
    drop(folder, "users.csv", BAD_HEADER)
    [error] = wait_for(lambda: errors(folder), "the batch to fail at validate")
    batch, failed = error.parent.name, error.parent
    assert read(error)["step"] == "validate"
    assert [f["name"] for f in read(error)["files_at_failure"]] == ["users.csv"]
    shown = daemon.wait_status("music", status="Error", step="validate", batches_failed=1)
    assert shown["batch"] == batch and shown["last_failed"] == batch
    status = run_dropd("status", "--config", str(config))
    assert f"batch:          {batch} (in failed/)" in status.stdout, status.stdout

    # Unchanged (a touch is no change): refused, with the reason, the folder and --force.
    (failed / "users.csv").touch()
    refused = run_dropd("retry", "--config", str(config), "music", batch)
    assert refused.returncode == 1, refused.stdout
    assert "failed at step validate" in refused.stderr and str(failed) in refused.stderr
    assert "--force" in refused.stderr and (failed / "error.json").is_file()

    # Fixed inside failed/BATCH/: back in line, the changed file named; sent, counted out.
    (failed / "users.csv").write_bytes(USERS)
    done = run_dropd("retry", "--config", str(config), "music", batch)
    assert done.returncode == 0, done.stderr
    assert 'changed "users.csv"' in done.stdout
    [receipt] = wait_for(lambda: receipts(folder), "the fixed batch's receipt")
    assert receipt.parent.name == batch
    after = daemon.wait_status("music", status="Valid", batches_failed=0)
    assert after["batch"] is None and after["last_failed"] is None
    status = run_dropd("status", "--config", str(config))
    assert status.returncode == 0 and "failed batches: 0" in status.stdout, status.stdout
