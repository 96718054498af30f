"""dropd under a real systemd 252, installed by running the install guide's own commands.

One machine for the whole file (systemd_ns.boot: PID 1 of private namespaces over an overlay
of /, so nothing reaches the host): the guide's blocks marked `<!-- tested: debian -->` in
docs/operator/install.md run in it as written, in order, with a clone of this repository at
/root/dropd and a wheelhouse built here (`pip wheel`) at /root/dropd-wheelhouse, as the
guide's offline install has them. Between blocks the test does what the guide leaves to the
reader: the config's URLs, the secrets. The sandbox is the provider, as a unit of the machine.
The tests below run in file order on that machine; the last one stops dropd.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import systemd_ns
from harness import USERS, wait_for

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "operator" / "install.md"
SANDBOX_UNIT = Path(__file__).parent / "systemd" / "dropd-sandbox.service"
CLONE, WHEELHOUSE = "/root/dropd", "/root/dropd-wheelhouse"
SECRET = "systemd-test-secret"  # the sandbox unit's client secret
SANDBOX_URL = "http://127.0.0.1:8089"
MARKER = "<!-- tested: debian -->"
DROPD_UNIT = "_SYSTEMD_UNIT=dropd.service"


@dataclass
class Installed:
    """The machine once the guide has been followed, and what was seen on the way."""

    machine: systemd_ns.Machine
    blocks: list[tuple[str, str]]  # (heading, shell block) of every tested block, in order
    seconds: dict[str, float] = field(default_factory=dict)
    after_start: dict[str, str] = field(default_factory=dict)


def guide_blocks(text: str) -> list[tuple[str, str]]:
    """Every ```sh block right after a MARKER line, with the heading it is under."""
    found, heading, lines = [], "", text.splitlines()
    for number, line in enumerate(lines):
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        if line.strip() == MARKER:
            assert lines[number + 1] == "```sh", f"{MARKER} must come right before a ```sh block"
            end = lines.index("```", number + 2)
            found.append((heading, "\n".join(lines[number + 2 : end])))
    return found


def run_block(installed: Installed, heading: str, block: str) -> str:
    """One block of the guide, as written, in the clone; times it."""
    started = time.monotonic()
    output = installed.machine.sh(f"cd {CLONE}\nset -x\n{block}")
    key = f"{heading}: {block.splitlines()[0]}"
    installed.seconds[key] = round(time.monotonic() - started, 2)
    return output


def edit_config(machine: systemd_ns.Machine, change: str = "") -> None:
    """What the guide asks the reader to fill in: the provider's URLs (here the sandbox's),
    short windows for a test; `change` appended."""
    text = machine.sh("cat /etc/dropd/dropd.toml")
    text = re.sub(r'(?m)^token_url = ".*"$', f'token_url = "{SANDBOX_URL}/oauth/token"', text)
    text = re.sub(r'(?m)^base_url = ".*"$', f'base_url = "{SANDBOX_URL}"', text)
    text = re.sub(r"(?m)^settle_seconds = .*$", "settle_seconds = 0.5", text)
    text = re.sub(r"(?m)^quiet_seconds = .*$", "quiet_seconds = 1", text)
    machine.write("/etc/dropd/dropd.toml", text + change)


def journal(machine: systemd_ns.Machine, *match: str) -> list[dict[str, Any]]:
    """The machine's journal entries matching `match` (journalctl's FIELD=VALUE terms)."""
    out = machine.run("journalctl", "--no-pager", "--all", "-o", "json", *match).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def dropd_lines(machine: systemd_ns.Machine) -> list[str]:
    """What dropd's own processes wrote to the journal (stdout and stderr), in order."""
    return [str(entry.get("MESSAGE", "")) for entry in journal(machine, DROPD_UNIT)]


def events(machine: systemd_ns.Machine) -> list[dict[str, Any]]:
    """dropd's JSON log lines in the journal (lines that are not JSON left out)."""
    found = []
    for line in dropd_lines(machine):
        if line.startswith("{"):
            found.append(json.loads(line))
    return found


def wait_event(machine: systemd_ns.Machine, name: str, after: int = 0) -> dict[str, Any]:
    return wait_for(
        lambda: next((e for e in events(machine)[after:] if e.get("event") == name), None),
        f"{name} in dropd's journal",
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """A machine with dropd installed and started by the guide's commands."""
    if (reason := systemd_ns.problem()) is not None:
        pytest.skip(f"no private systemd here: {reason}")
    scratch = tmp_path_factory.mktemp("systemd")
    wheels = scratch / "wheelhouse"
    started = time.monotonic()
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(wheels), str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert built.returncode == 0, f"pip wheel failed:\n{built.stderr}"
    wheel_seconds = round(time.monotonic() - started, 2)
    machine = systemd_ns.boot(scratch / "machine", {REPO: CLONE, wheels: WHEELHOUSE})
    try:
        state = Installed(machine, guide_blocks(GUIDE.read_text(encoding="utf-8")))
        state.seconds["pip wheel (here, with the index)"] = wheel_seconds
        state.seconds["boot to running"] = round(machine.boot_seconds, 2)
        install(state)
        yield state
    except BaseException:
        print(machine.console())
        raise
    finally:
        print("seconds:", json.dumps(state.seconds if "state" in locals() else {}, indent=1))
        machine.stop()


def install(state: Installed) -> None:
    """The guide's blocks up to and including the start, with the reader's part between."""
    machine = state.machine
    headings = [heading for heading, _ in state.blocks]
    assert "6. Check, then start" in headings, headings
    for heading, block in state.blocks:
        if heading.startswith("Another"):
            break
        if heading.startswith("6."):
            machine.run("cp", f"{CLONE}/{SANDBOX_UNIT.relative_to(REPO)}", "/etc/systemd/system/")
            machine.systemctl("daemon-reload")
            machine.systemctl("start", "dropd-sandbox")
            wait_for(
                lambda: "listening on" in machine.sh("journalctl -u dropd-sandbox -o cat"),
                "the sandbox to listen",
            )
        run_block(state, heading, block)
        if heading.startswith("6."):
            # Right as `systemctl enable --now` returned.
            for prop in ("ActiveState", "SubState", "StatusText", "MainPID", "Type"):
                state.after_start[prop] = machine.show("dropd", prop)
            state.after_start["events"] = " ".join(e.get("event", "") for e in events(machine))
        if heading.startswith("3."):
            edit_config(machine)
        if "credentials/test.secret" in block:
            for name in ("test", "production"):
                machine.write(f"/etc/dropd/credentials/{name}.secret", SECRET + "\n")


# -- the tests, in order -------------------------------------------------------------------


def test_systemd_start_returns_once_ready(installed: Installed) -> None:
    """`systemctl enable --now` (Type=notify) returned with dropd running, ready, and its
    status line as the unit's StatusText."""
    seen = installed.after_start
    assert (seen["Type"], seen["ActiveState"], seen["SubState"]) == ("notify", "active", "running")
    assert "daemon_ready" in seen["events"].split()
    assert re.fullmatch(r"2 groups, 0 files waiting, no upload yet, 0 in error", seen["StatusText"])
    assert installed.machine.show("dropd", "User") == "dropd"


def test_systemd_a_writer_of_the_group_drops_and_it_is_sent(installed: Installed) -> None:
    """alice, in music-sis only, drops a 0640 file; dropd reads it through the unit's
    SupplementaryGroups=, sends it with the secret from LoadCredential=, files it in sent/."""
    machine = installed.machine
    machine.run("useradd", "--no-create-home", "--groups", "music-sis", "alice")
    started = time.monotonic()
    machine.run(
        "setpriv", "--reuid=alice", "--regid=alice", "--init-groups", "--",
        "sh", "-ec", "cd /srv/drop/music; umask 027; cat > .u.part; mv .u.part users.csv",
        input=USERS.decode(),
    )  # fmt: skip
    assert machine.sh("cd /srv/drop/music && stat -c '%U:%G %a' users.csv") == (
        "alice:music-sis 640\n"
    )

    def receipt_or_failure() -> str:
        found = machine.sh("find /srv/drop/music/sent -name receipt.json 2>/dev/null || true")
        failed = [e for e in events(machine) if e.get("level") in ("error", "warning")]
        assert not failed, failed
        return found

    receipt = wait_for(receipt_or_failure, "a receipt in sent/").split()[0]
    installed.seconds["drop to receipt"] = round(time.monotonic() - started, 2)
    batch = Path(receipt).parent
    assert machine.sh(f"find {batch} -name users.csv -exec cat {{}} +") == USERS.decode()
    assert machine.sh("ls /var/lib/dropd-sandbox/store").split(), "the sandbox got no upload"
    assert any(e.get("event") == "batch_sent" for e in events(machine))


def test_systemd_the_secret_comes_through_load_credential(installed: Installed) -> None:
    """dropd's $CREDENTIALS_DIRECTORY holds copies of both secrets (the upload above used one);
    dropd itself cannot read /etc/dropd/credentials."""
    machine = installed.machine
    pid = machine.show("dropd", "MainPID")
    environ = machine.sh(f"tr '\\0' '\\n' < /proc/{pid}/environ")
    assert "CREDENTIALS_DIRECTORY=/run/credentials/dropd.service" in environ.splitlines()
    listed = machine.sh("ls /run/credentials/dropd.service").split()
    assert listed == ["production.secret", "test.secret"]
    assert machine.sh("cat /run/credentials/dropd.service/test.secret") == SECRET + "\n"
    denied = machine.run(
        "setpriv", "--reuid=dropd", "--regid=dropd", "--init-groups", "--",
        "ls", "/etc/dropd/credentials", check=False,
    )  # fmt: skip
    assert denied.returncode != 0 and "Permission denied" in denied.stderr


def test_systemd_reload_adds_a_group(installed: Installed) -> None:
    """The guide's "another drop folder" blocks, then `systemctl reload`: config_reloaded."""
    machine = installed.machine
    later = [(h, b) for h, b in installed.blocks if h.startswith("Another")]
    assert len(later) == 2, later
    before = len(events(machine))
    run_block(installed, *later[0])
    edit_config(
        machine,
        '\n[groups.music-theory]\nenvironment = "production"\nfolder = "/srv/drop/music-theory"\n',
    )
    started = time.monotonic()
    run_block(installed, *later[1])
    reloaded = wait_event(machine, "config_reloaded", after=before)
    installed.seconds["reload to config_reloaded"] = round(time.monotonic() - started, 2)
    assert "music-theory" in json.dumps(reloaded)
    wait_for(lambda: machine.show("dropd", "StatusText").startswith("3 groups"), "3 groups")
    assert machine.show("dropd", "ActiveState") == "active"


def test_systemd_hardening_leaves_only_the_folders_writable(installed: Installed) -> None:
    """In dropd's own mount namespace, as user dropd: the drop folders and state_dir take a
    file; /usr, /etc/dropd, /opt/dropd, /srv/drop itself do not; /home and /root are empty."""
    machine = installed.machine
    pid = machine.show("dropd", "MainPID")
    as_dropd = (
        "nsenter", "-t", pid, "-m", "--",
        "setpriv", "--reuid=dropd", "--regid=dropd", "--groups=music-sis,registrar", "--",
    )  # fmt: skip

    def writes(folder: str) -> bool:
        probe = f"{folder}/.hardening-probe"
        done = machine.run(*as_dropd, "sh", "-c", f"touch {probe} && rm {probe}", check=False)
        return done.returncode == 0

    writable = ["/srv/drop/music", "/srv/drop/sis-nightly", "/srv/drop/music-theory"]
    writable += ["/var/lib/dropd", "/tmp", "/var/tmp"]  # the last two: its private ones
    read_only = ["/usr", "/usr/lib", "/etc", "/etc/dropd", "/opt/dropd", "/srv/drop", "/var/lib"]
    read_only += ["/run", "/run/lock", "/dev/shm"]  # the last two: 1777 on the host
    assert {f: writes(f) for f in writable + read_only} == {
        **{f: True for f in writable},
        **{f: False for f in read_only},
    }
    for hidden in ("/home", "/root"):
        listing = machine.run("nsenter", "-t", pid, "-m", "--", "ls", "-A", hidden, check=False)
        assert listing.stdout == "", f"{hidden} shows {listing.stdout!r} to dropd"
    # Root's view of the same namespace: the only writable mounts but the kernel's own file
    # systems (/proc, /dev/pts, /dev/mqueue: their own rules) are the folders above.
    rw = set()
    for line in machine.sh(f"cat /proc/{pid}/mountinfo").splitlines():
        fields, kind = line.split(" - ")[0].split(), line.split(" - ")[1].split()[0]
        if "rw" in fields[5].split(",") and kind not in ("proc", "devpts", "mqueue"):
            rw.add(fields[4])
    assert rw == {"/srv/drop", "/var/lib/dropd", "/tmp", "/var/tmp"}


def test_systemd_journal_holds_the_json_lines(installed: Installed) -> None:
    """Every line dropd wrote to the journal is one JSON object; the story so far is there."""
    lines = dropd_lines(installed.machine)
    parsed = [json.loads(line) for line in lines]
    names = [entry["event"] for entry in parsed]
    for name in ("daemon_starting", "daemon_ready", "batch_sent", "config_reloaded"):
        assert name in names
    assert all({"event", "level", "timestamp"} <= entry.keys() for entry in parsed)


def test_systemd_watchdog_restarts_a_hung_loop(installed: Installed) -> None:
    """A loop that hangs stops the pings; systemd aborts dropd (SIGABRT, a traceback in the
    journal) and starts a new one (NRestarts up, a new MainPID)."""
    core_pattern = Path("/proc/sys/kernel/core_pattern").read_text(encoding="utf-8")
    if core_pattern.startswith("|"):
        pytest.skip(f"core dumps go to a program on the host ({core_pattern.strip()})")
    machine = installed.machine
    machine.write(
        "/etc/systemd/system/dropd.service.d/watchdog-test.conf",
        "[Service]\nWatchdogSec=3s\nRestartSec=1s\n"
        "Environment=DROPD_TEST_HANG_FILE=/var/lib/dropd/hang\n"
        # The next dropd must not hang too.
        "ExecStopPost=/bin/rm -f /var/lib/dropd/hang\n",
    )
    machine.systemctl("daemon-reload")
    machine.systemctl("restart", "dropd")
    pid, restarts = machine.show("dropd", "MainPID"), int(machine.show("dropd", "NRestarts"))
    started = time.monotonic()
    machine.run("touch", "/var/lib/dropd/hang")
    wait_for(
        lambda: (
            machine.show("dropd", "MainPID") not in ("0", pid)
            and machine.show("dropd", "ActiveState") == "active"
        ),
        "a new dropd after the watchdog",
    )
    installed.seconds["hang to a new dropd (WatchdogSec=3s, RestartSec=1s)"] = round(
        time.monotonic() - started, 2
    )
    assert int(machine.show("dropd", "NRestarts")) == restarts + 1
    said = [str(e.get("MESSAGE", "")) for e in journal(machine, "UNIT=dropd.service")]
    assert any("Watchdog timeout" in line for line in said), said[-10:]
    assert any("hang_if_asked" in line for line in dropd_lines(machine))
    assert machine.sh("ls -A /var/lib/dropd").split().count("hang") == 0


def test_systemd_stop_is_clean(installed: Installed) -> None:
    """`systemctl stop`: daemon_stopped in the journal, exit 0, result success."""
    machine = installed.machine
    before = len(events(machine))
    started = time.monotonic()
    machine.systemctl("stop", "dropd")
    installed.seconds["systemctl stop"] = round(time.monotonic() - started, 2)
    wait_event(machine, "daemon_stopped", after=before)
    assert machine.show("dropd", "ActiveState") == "inactive"
    assert machine.show("dropd", "Result") == "success"
    assert machine.show("dropd", "ExecMainStatus") == "0"
