"""`metrics_port`: a real `dropd run` scraped over HTTP while it sends to the real sandbox."""

from __future__ import annotations

import signal
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from harness import (
    USERS,
    DaemonProcess,
    Samples,
    SandboxProcess,
    drop,
    errors,
    free_port,
    music_group,
    read,
    receipts,
    sample,
    sandbox_environment,
    scrape,
    script_sandbox,
    start_ready,
    toml_config,
    wait_for,
    write_secret,
)

FAST: dict[str, Any] = {"retry_initial_seconds": 0.2, "retry_max_seconds": 1}
SUCCEEDED = ("dropd_last_success_timestamp_seconds", -1.0)


def scraped_once(
    port: int, name: str, want: float, gauge: tuple[str, float] | None = None, **labels: str
) -> Samples:
    """Scrape until sample `name` reaches `want` (the scheduler counts just after the record),
    and the per-group `gauge` (name, value) too: the scheduler publishes those at most every
    half second while things happen, so they may follow a counter by that much (a value of
    -1: any value, once the gauge is there)."""

    def reached() -> Samples | None:
        got = scrape(port)
        if sample(got, name, **labels) != want:
            return None
        if gauge is not None:
            found = sample(got, gauge[0], group=labels["group"])
            if found is None or gauge[1] not in (found, -1):
                return None
        return got

    return wait_for(reached, f"{name}{labels} == {want}")


def listeners(port: int) -> list[str]:
    """The local addresses of the sockets listening on TCP `port` (Linux /proc)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.rsplit(":", 1)
            if state == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
                found.append(address)
    return found


def test_metrics_scrape_after_a_sent_batch(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    port = free_port()
    config, folder = music_group(tmp_path, sandbox, metrics_port=port)
    daemon = start_ready(processes, config, tmp_path / "daemon.log")
    assert daemon.wait_event("metrics_serving")["url"] == f"http://127.0.0.1:{port}/metrics"
    assert listeners(port) == ["0100007F"], "the metrics listen on 127.0.0.1 only"
    with pytest.raises(OSError), socket.create_connection(("127.0.0.2", port), timeout=2):
        pass

    drop(folder, "users.csv", USERS)
    [receipt] = wait_for(lambda: receipts(folder), "the receipt")
    record = read(receipt)
    music = {"group": "music"}
    got = scraped_once(port, "dropd_batches_total", 1, outcome="sent", gauge=SUCCEEDED, **music)

    assert sample(got, "dropd_batches_total", outcome="failed", **music) == 0
    assert sample(got, "dropd_sent_files_total", **music) == len(record["files"]) == 1
    assert sample(got, "dropd_sent_file_bytes_total", **music) == record["files"][0]["bytes"]
    assert record["files"][0]["bytes"] == len(USERS)
    assert sample(got, "dropd_sent_zip_bytes_total", **music) == record["zip"]["bytes"]
    assert sample(got, "dropd_upload_duration_seconds_count", **music) == 1
    assert sample(got, "dropd_upload_duration_seconds_bucket", le="+Inf", **music) == 1
    last = sample(got, "dropd_last_success_timestamp_seconds", **music)
    assert last is not None and last > 0
    assert sample(got, "dropd_group_status", status="Valid", **music) == 1
    assert sample(got, "dropd_group_status", status="Error", **music) == 0
    assert sample(got, "dropd_group_owner", **music) == 1
    assert sample(got, "dropd_files_waiting", **music) == 0
    assert sample(got, "dropd_batches_failed", **music) == 0
    assert sample(got, "dropd_token_fetches_total", environment="test", result="ok") == 1
    assert not [key for key in got if key[0] == "dropd_retries_total"]
    assert (sample(got, "process_resident_memory_bytes") or 0) > 0


def test_metrics_count_retries_and_failed_batches(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    port = free_port()
    config, folder = music_group(tmp_path, sandbox, metrics_port=port, **FAST)
    start_ready(processes, config, tmp_path / "daemon.log")
    music = {"group": "music"}

    script_sandbox(sandbox, [{"status": 503}])
    drop(folder, "users.csv", USERS)
    wait_for(lambda: receipts(folder), "the receipt after a 503")
    got = scraped_once(port, "dropd_batches_total", 1, outcome="sent", gauge=SUCCEEDED, **music)
    assert sample(got, "dropd_retries_total", step="upload", **music) == 1
    assert sample(got, "dropd_upload_duration_seconds_count", **music) == 2

    body = {"message": "No files to process", "fileErrors": None}
    script_sandbox(sandbox, [{"status": 400, "body": body}])
    drop(folder, "users.csv", USERS)
    wait_for(lambda: errors(folder), "the batch refused with a 400")
    failed = ("dropd_batches_failed", 1.0)
    got = scraped_once(port, "dropd_batches_total", 1, outcome="failed", gauge=failed, **music)
    assert sample(got, "dropd_group_status", status="Error", **music) == 1
    assert sample(got, "dropd_group_status", status="Valid", **music) == 0
    assert sample(got, "dropd_group_error_step", step="upload", **music) == 1
    assert sample(got, "dropd_batches_failed", **music) == 1
    assert sample(got, "dropd_retries_total", step="upload", **music) == 1

    # A file dropd does not take fails alone at intake, outside any upload: counted too.
    drop(folder, "notes.txt", b"not a csv\n")
    failed = ("dropd_batches_failed", 2.0)
    got = scraped_once(port, "dropd_batches_total", 2, outcome="failed", gauge=failed, **music)
    assert sample(got, "dropd_batches_failed", **music) == 2
    assert sample(got, "dropd_batches_total", outcome="sent", **music) == 1


def test_metrics_port_in_use_is_logged_and_files_still_flow(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config, folder = music_group(tmp_path, sandbox, metrics_port=port)
        daemon = start_ready(processes, config, tmp_path / "daemon.log")

        problem = daemon.wait_event("metrics_unavailable")
        assert problem["level"] == "error"
        assert problem["problem"].startswith(f"daemon.metrics_port: 127.0.0.1:{port} ")
        assert "in use" in problem["problem"]
        drop(folder, "users.csv", USERS)
        wait_for(lambda: receipts(folder), "the receipt without metrics")
        assert daemon.process.poll() is None


def test_metrics_reload_moves_to_the_new_port(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    first, second = free_port(), free_port()
    folder = tmp_path / "drop" / "music"
    folder.mkdir(parents=True)
    secret = write_secret(tmp_path / "test.secret", "secret-a-1234")
    tables: dict[str, Any] = {
        "environments": {"test": sandbox_environment(sandbox, "unit-a", secret)},
        "groups": {"music": {"environment": "test", "folder": str(folder)}},
    }
    config = toml_config(tmp_path, **tables, metrics_port=first)
    daemon = start_ready(processes, config, tmp_path / "daemon.log")
    scraped_once(first, "dropd_group_owner", 1, group="music")

    toml_config(tmp_path, **tables, metrics_port=second)
    daemon.process.send_signal(signal.SIGHUP)
    daemon.wait_event("config_reloaded")

    assert sample(scrape(second), "dropd_group_owner", group="music") == 1
    with pytest.raises(urllib.error.URLError):
        scrape(first)
    assert daemon.wait_event("metrics_stopped")["port"] == first
