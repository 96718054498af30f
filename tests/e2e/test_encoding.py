"""A group's `encoding`: a cp1252 CSV goes up as UTF-8, a UTF-8 message.properties goes up
with \\uXXXX escapes, the originals are filed as dropped, and the receipt says both."""

from __future__ import annotations

import zipfile
from pathlib import Path

from harness import (
    DaemonProcess,
    SandboxProcess,
    drop,
    music_group,
    read,
    receipts,
    sent_files,
    start_ready,
    wait_for,
)

USERS = "user_id,login_id,first_name,last_name,email,status\r\n" + (
    "g1,renee@example.edu,Renée,Dupré,renee@example.edu,active\r\n"
)
PROPERTIES = "sender=music@example.edu\nsubject=Bienvenue\nbody=Café à la Renée\n"


def test_a_cp1252_csv_and_a_utf8_message_properties_go_up_as_the_server_reads_them(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    config, folder = music_group(tmp_path, sandbox, {"encoding": "cp1252"}, quiet_seconds=1.0)
    start_ready(processes, config, tmp_path / "daemon.log")
    dropped = {
        "users.csv": USERS.encode("cp1252"),
        # Written in an editor, in UTF-8: read as UTF-8 where it reads so, in any group.
        "message.properties": PROPERTIES.encode("utf-8"),
    }
    for name, content in dropped.items():
        drop(folder, name, content)
    [receipt] = wait_for(lambda: receipts(folder), "the receipt")

    [upload] = sandbox.uploads()
    with zipfile.ZipFile(upload / "upload.zip") as archive:
        assert archive.read("users.csv") == USERS.encode("utf-8")
        properties = archive.read("message.properties")
    assert properties == (
        b"sender=music@example.edu\nsubject=Bienvenue\nbody=Caf\\u00e9 \\u00e0 la Ren\\u00e9e\n"
    )
    assert sandbox.request(upload)["form"].get("customUsersNotification") == "true"
    assert sent_files(folder) == {name: [content] for name, content in dropped.items()}
    files = {f["name"]: f for f in read(receipt)["files"]}
    assert files["users.csv"]["converted"] == {"from": "cp1252", "to": "utf-8"}
    assert "escaped" not in files["users.csv"]
    assert "converted" not in files["message.properties"]
    assert files["message.properties"]["escaped"] == 3


def test_a_utf8_group_escapes_message_properties_and_converts_nothing(
    tmp_path: Path, sandbox: SandboxProcess, processes: list[SandboxProcess | DaemonProcess]
) -> None:
    config, folder = music_group(tmp_path, sandbox, quiet_seconds=1.0)
    start_ready(processes, config, tmp_path / "daemon.log")
    dropped = {
        "users.csv": USERS.encode("utf-8"),
        "Message.Properties": PROPERTIES.encode("utf-8"),
    }
    for name, content in dropped.items():
        drop(folder, name, content)
    [receipt] = wait_for(lambda: receipts(folder), "the receipt")

    [upload] = sandbox.uploads()
    with zipfile.ZipFile(upload / "upload.zip") as archive:
        assert archive.read("users.csv") == dropped["users.csv"]
        assert b"body=Caf\\u00e9 \\u00e0 la Ren\\u00e9e\n" in archive.read("Message.Properties")
    assert sandbox.request(upload)["form"].get("customUsersNotification") == "true"
    assert sent_files(folder) == {name: [content] for name, content in dropped.items()}
    files = {f["name"]: f for f in read(receipt)["files"]}
    assert "converted" not in files["users.csv"] and "converted" not in files["Message.Properties"]
    assert files["Message.Properties"]["escaped"] == 3
