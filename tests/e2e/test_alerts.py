"""[notify] against the real daemon: its alerts reach a local SMTP server and a local JSON
webhook, each naming the group, the batch, the step, the reason and the command to run;
a reload applies a changed table; a URL that cannot be reached is logged and changes
nothing else; and no URL, nor the password in one, reaches the daemon's output."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from guardfiles import held_records, users_csv
from harness import (
    USERS,
    DaemonProcess,
    SandboxProcess,
    drop,
    errors,
    free_port,
    music_group,
    read,
    receipts,
    run_dropd,
    start_ready,
    wait_for,
    write_secret,
)
from listeners import MailServer, Webhook

PASSWORD = "Mail-Relay-Pa55word"
BAD_HEADER = b"user_id,login_id,first_name,last_name,email\nu1,a@x.edu,A,B,a@x.edu\n"
FRIENDLY = "Jacobs School of Music"


@pytest.fixture
def mail() -> Iterator[MailServer]:
    server = MailServer()
    yield server
    server.stop()


@pytest.fixture
def webhooks() -> Iterator[list[Webhook]]:
    started = [Webhook(), Webhook()]
    yield started
    for hook in started:
        hook.stop()


def with_notify(config: Path, table: str) -> None:
    config.write_text(config.read_text(encoding="utf-8") + "\n[notify]\n" + table + "\n")


def test_alerts_reach_mail_and_a_webhook_and_no_url_reaches_the_log(
    tmp_path: Path,
    sandbox: SandboxProcess,
    processes: list[SandboxProcess | DaemonProcess],
    mail: MailServer,
    webhooks: list[Webhook],
) -> None:
    hook, second = webhooks
    config, folder = music_group(tmp_path, sandbox, {"friendly_name": FRIENDLY})
    urls = tmp_path / "notify.urls"
    urls.write_text(f"# the team's relay\n{mail.url(PASSWORD)}\n\n{hook.url()}\n")
    urls.chmod(0o600)
    original = config.read_text(encoding="utf-8")
    with_notify(config, f'urls_file = "{urls}"')
    checked = run_dropd("check-config", "--config", str(config))
    assert checked.returncode == 0, checked.stderr
    daemon = start_ready(processes, config, tmp_path / "daemon.log")
    configured = daemon.wait_event("alerts_configured")
    assert configured["urls"] == 2 and configured["schemes"] == ["json", "mailto"]

    # A batch that fails at validate: one message through each URL.
    drop(folder, "users.csv", BAD_HEADER)
    [error] = wait_for(lambda: errors(folder), "the batch to fail at validate")
    batch = error.parent.name
    wait_for(lambda: mail.messages and hook.posts, "the batch_failed alert, by mail and JSON")
    [message] = mail.messages
    title = f"dropd: batch {batch} of music failed at step validate"
    assert message["Subject"] == title
    assert message["To"] == "sis-team@example.edu"
    assert mail.logins == [("dropd", PASSWORD)]  # the password from the file was used
    text = message.get_content()
    assert f"Group: music ({FRIENDLY})" in text and f"Batch: {batch}" in text
    assert "Step: validate" in text and f"Reason: {read(error)['reason']}" in text
    assert f"dropd retry --config {config} music {batch}" in text
    [(path, posted)] = hook.posts
    assert path == "/dropd" and posted["title"] == title and posted["type"] == "failure"
    assert f"dropd retry --config {config} music {batch}" in posted["message"]
    sent = daemon.wait_event("alert_sent", target=f"{urls} line 2")  # line 1: a comment
    assert sent["scheme"] == "mailto" and sent["batch"] == batch
    assert daemon.wait_event("alert_sent", target=f"{urls} line 4")["scheme"] == "json"

    # The guard holds a batch: `dropd release` is the command.
    drop(folder, "users.csv", users_csv(200, 101))
    [held] = wait_for(lambda: held_records(folder), "the batch held")
    wait_for(lambda: len(hook.posts) == 2, "the batch_held alert")
    posted = hook.bodies()[1]
    assert posted["title"] == f"dropd: batch {held.parent.name} of music held by the guard"
    assert f"dropd release --config {config} music {held.parent.name}" in posted["message"]

    # A secret the token server refuses: the group waits at step token, told once.
    write_secret(tmp_path / "test.secret", "not-the-secret")
    daemon.process.send_signal(signal.SIGHUP)
    daemon.wait_event("config_reloaded")
    drop(folder, "users.csv", USERS)
    wait_for(lambda: len(hook.posts) == 3, "the group_error alert")
    posted = hook.bodies()[2]
    assert posted["title"] == "dropd: music needs a person (step token)"
    assert f"dropd verify --config {config} music" in posted["message"]
    assert "Batch: " in posted["message"] and "Reason: " in posted["message"]

    # A reload with the secret fixed and [notify] changed: the recovery goes to the new URL.
    write_secret(tmp_path / "test.secret", "secret-a-1234")
    config.write_text(original + f'\n[notify]\nurls = ["{second.url("/new")}"]\n')
    daemon.process.send_signal(signal.SIGHUP)
    wait_for(lambda: receipts(folder), "the waiting batch sent after the fix")
    wait_for(lambda: second.posts, "the group_recovered alert, to the new URL")
    [(path, posted)] = second.posts
    assert path == "/new" and posted["title"] == "dropd: music is fine again (step token)"
    assert posted["type"] == "success"
    assert len(hook.posts) == len(mail.messages) == 3  # the first URLs got the first three
    assert daemon.stop() == 0

    # No URL, nor any part of one that is a secret, is anywhere in what dropd wrote.
    output = daemon.text()
    for secret in (PASSWORD, "mailto://", "json://", f":{mail.port}", "sis-team@example.edu"):
        assert secret not in output, secret
    assert daemon.named("group_error", step="token")  # the log says it as well


def test_an_unreachable_url_is_logged_and_the_batch_is_filed_all_the_same(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    config, folder = music_group(tmp_path, sandbox)
    port = free_port()  # nothing listens there
    with_notify(config, f'urls = ["json://127.0.0.1:{port}/down"]\non = ["batch_failed"]')
    daemon = start_ready(processes, config, tmp_path / "daemon.log")

    drop(folder, "users.csv", BAD_HEADER)
    failed = daemon.wait_event("alert_failed")
    assert failed["alert"] == "batch_failed" and failed["target"] == "notify.urls[0]"
    assert failed["scheme"] == "json" and failed["reason"]
    assert errors(folder), "the batch is in failed/ with its error.json"
    drop(folder, "users.csv", USERS)
    wait_for(lambda: receipts(folder), "the next batch sent")
    assert daemon.stop() == 0
    assert f":{port}" not in daemon.text()


def test_check_config_names_a_bad_url_by_its_place_and_scheme_only(tmp_path: Path) -> None:
    config = tmp_path / "dropd.toml"
    urls = tmp_path / "notify.urls"
    urls.write_text(f"mailto://dropd:{PASSWORD}@127.0.0.1:25\n")  # no from= fits an IP
    config.write_text(
        f'[notify]\nurls_file = "{urls}"\n\n[daemon]\nstate_dir = "{tmp_path}/state"\n'
    )
    done = run_dropd("check-config", "--config", str(config))
    assert done.returncode == 2
    assert f"notify.urls_file: {urls} line 1: a mailto:// URL apprise cannot use" in done.stderr
    assert PASSWORD not in done.stderr + done.stdout and "127.0.0.1" not in done.stderr
    done = run_dropd("verify", "--config", str(config))  # it says so too, and sends nothing
    assert done.returncode == 1
    assert done.stdout.startswith("[notify]  urls      failed: notify.urls_file: ")
    assert PASSWORD not in done.stderr + done.stdout
    urls.write_text(f"mailto://dropd:{PASSWORD}@relay.example.edu\njson://127.0.0.1:9/x\n")
    done = run_dropd("verify", "--config", str(config))
    assert (done.returncode, done.stdout) == (0, "[notify]  urls      ok (2 URLs: json, mailto)\n")

    config.write_text(f'[notify]\nurls = ["mailto://dropd:{PASSWORD}@relay.example.edu"]\n')
    done = run_dropd("check-config", "--config", str(config))
    assert done.returncode == 2 and "notify.urls[0]: a mailto:// URL with a password" in done.stderr
    assert PASSWORD not in done.stderr + done.stdout


def test_verify_send_test_sends_through_each_url_and_names_the_one_that_failed(
    tmp_path: Path, mail: MailServer, webhooks: list[Webhook]
) -> None:
    config = tmp_path / "dropd.toml"
    urls = tmp_path / "notify.urls"
    urls.write_text(f"{mail.url(PASSWORD)}\n{webhooks[0].url()}\njson://127.0.0.1:9/nobody\n")
    urls.chmod(0o600)
    config.write_text(f'[notify]\nurls_file = "{urls}"\n\n[daemon]\nstate_dir = "{tmp_path}/s"\n')
    done = run_dropd("verify", "--config", str(config), "--send-test")
    lines = done.stdout.splitlines()
    assert done.returncode == 1, done.stdout + done.stderr
    assert lines[0] == "[notify]  urls      ok (3 URLs: json, mailto)"
    assert lines[1] == f"[notify]  test      sent through {urls} line 1 (mailto)"
    assert lines[2] == f"[notify]  test      sent through {urls} line 2 (json)"
    assert lines[3].startswith(f"[notify]  test      failed through {urls} line 3 (json): ")
    [message] = mail.messages
    assert message["Subject"] == "dropd: a test message"
    [body] = webhooks[0].bodies()
    assert body["title"] == "dropd: a test message" and "Nothing is wrong" in body["message"]
    assert PASSWORD not in done.stdout + done.stderr and "/nobody" not in done.stdout
    config.write_text(f'[daemon]\nstate_dir = "{tmp_path}/s"\n')
    done = run_dropd("verify", "--config", str(config), "--send-test")
    assert done.returncode == 1 and "--send-test: the config has no [notify] table" in done.stderr
