"""A real systemd 252 for tests: PID 1 of private namespaces over an overlay of the host's root.

Never systemd on the machine's own root: its boot empties /tmp for every process on the machine
and starts the host's services. Here everything it writes lands in a tmpfs that vanishes with
the mount namespace, it sees only a cgroup of its own, and every unit of the host is masked but
journald, tmpfiles and sysusers. `boot()` returns a `Machine` to run commands in; `Machine.stop()`
kills it from outside and removes its cgroup and scratch folder, whatever state it is in.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

SYSTEMD = Path("/lib/systemd/systemd")
TARGET = "dropd-test.target"
# What runs inside: the host's units the machine keeps (everything else is masked).
KEPT_UNITS = frozenset(
    {
        "systemd-journald.service",
        "systemd-journald.socket",
        "systemd-journald-dev-log.socket",
        "systemd-journal-flush.service",
        "systemd-tmpfiles-setup.service",
        "systemd-tmpfiles-setup-dev.service",
        "systemd-sysusers.service",
        "dev-mqueue.mount",
    }
)
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BOOT_DEADLINE = 30.0

# Runs as PID 1 of the new namespaces (unshare --fork), then becomes systemd. $1: scratch
# folder (becomes a tmpfs), $2: the pty for /dev/console, then pairs of HOST_PATH INSIDE_PATH
# bound read-only into the machine.
SETUP = r"""
set -eu
scratch=$1 console=$2
shift 2
mount -t tmpfs -o mode=0700 dropd-test "$scratch"
mkdir "$scratch/upper" "$scratch/work" "$scratch/root"
root=$scratch/root
mount -t overlay overlay -o "lowerdir=/,upperdir=$scratch/upper,workdir=$scratch/work" "$root"

mount -t proc proc "$root/proc"
mount --bind "$root/proc/sys" "$root/proc/sys"
mount -o remount,bind,ro "$root/proc/sys"
mount -t sysfs -o ro sysfs "$root/sys"
mount -t cgroup2 cgroup2 "$root/sys/fs/cgroup"
mount -t tmpfs -o mode=0755,nosuid dev "$root/dev"
for node in null:1:3 zero:1:5 full:1:7 random:1:8 urandom:1:9 tty:5:0; do
    IFS=: read -r name major minor <<EOF
$node
EOF
    mknod -m 0666 "$root/dev/$name" c "$major" "$minor"
done
mkdir "$root/dev/pts" "$root/dev/shm" "$root/dev/mqueue"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$root/dev/pts"
ln -s pts/ptmx "$root/dev/ptmx"
ln -s /proc/self/fd "$root/dev/fd"
ln -s /proc/self/fd/0 "$root/dev/stdin"
ln -s /proc/self/fd/1 "$root/dev/stdout"
ln -s /proc/self/fd/2 "$root/dev/stderr"
touch "$root/dev/console"
mount --bind "$console" "$root/dev/console"
mount -t tmpfs -o mode=0755,nosuid,nodev run "$root/run"
mount -t tmpfs -o mode=1777,nosuid,nodev tmp "$root/tmp"
mount -t tmpfs -o mode=1777,nosuid,nodev vartmp "$root/var/tmp"
while [ $# -ge 2 ]; do
    mkdir -p "$root$2"
    mount --bind "$1" "$root$2"
    mount -o remount,bind,ro "$root$2"
    shift 2
done

# Only the units the tests want: the host's enabled units, generators (fstab, getty, sysv)
# and services are gone from this root.
rm -rf "$root"/etc/systemd/system/* "$root"/lib/systemd/system-generators/* \
    "$root"/etc/systemd/system-generators "$root"/etc/init.d "$root"/etc/rc?.d
for unit in "$root"/lib/systemd/system/*; do
    name=${unit##*/}
    [ -d "$unit" ] && continue
    case "$name" in
        *.target|*.slice) continue ;;
    esac
    case " $KEPT " in
        *" $name "*) continue ;;
    esac
    ln -s /dev/null "$root/etc/systemd/system/$name"
done
cat > "$root/etc/systemd/system/$TARGET" <<EOF
[Unit]
Description=dropd test machine
Requires=sysinit.target
After=sysinit.target
Wants=systemd-journald.service
EOF
mkdir -p "$root/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\nRateLimitBurst=0\n' \
    > "$root/etc/systemd/journald.conf.d/volatile.conf"
echo "$MACHINE_ID" > "$root/etc/machine-id"
hostname dropd-test
ip link set lo up

cd "$root"
mkdir -p oldroot
pivot_root . oldroot
cd /
umount -l /oldroot
rmdir /oldroot
# LoadCredential= needs shared propagation on /: without it the service gets an empty
# credentials folder and no error.
mount --make-rshared /
exec env -i container=dropd-test /lib/systemd/systemd --unit="$TARGET" --log-target=journal-or-kmsg
"""


@dataclass
class Machine:
    """A systemd booted in namespaces of its own; commands run in it through nsenter."""

    pid1: int
    process: subprocess.Popen[bytes]
    cgroup: Path
    scratch: Path
    console_log: Path
    boot_seconds: float = 0.0
    _console: threading.Thread | None = field(default=None, repr=False)

    def alive(self) -> bool:
        """True while PID 1 is still the systemd this machine started."""
        if self.process.poll() is not None:
            return False
        try:
            return Path(f"/proc/{self.pid1}/comm").read_text().strip() == "systemd"
        except OSError:
            return False

    def run(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """`args` inside every namespace of the machine, as its root, with a plain environment."""
        assert self.alive(), f"the machine's systemd is gone:\n{self.console()}"
        command = [
            "nsenter", "-t", str(self.pid1), "-m", "-u", "-i", "-n", "-p", "-C", "-r", "-w",
            "--", "env", "-i", f"PATH={PATH}", "HOME=/root", "LANG=C.UTF-8", "SYSTEMD_PAGER=",
            "SYSTEMD_COLORS=0", *args,
        ]  # fmt: skip
        done = subprocess.run(
            command, input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited {done.returncode}\n"
                f"stdout: {done.stdout}\nstderr: {done.stderr}"
            )
        return done

    def sh(self, script: str, input: str | None = None, check: bool = True) -> str:
        """A shell script inside the machine (`sh -e`); its stdout."""
        return self.run("sh", "-ec", script, input=input, check=check).stdout

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("systemctl", *args, check=check)

    def show(self, unit: str, prop: str) -> str:
        """One property of a unit (`systemctl show -p PROP --value UNIT`)."""
        return self.systemctl("show", "-p", prop, "--value", unit).stdout.strip()

    def write(self, path: str, text: str) -> None:
        """Replace the content of `path` inside the machine, keeping its owner and mode."""
        self.run("sh", "-ec", 'cat > "$1"', "sh", path, input=text)

    def console(self) -> str:
        try:
            return self.console_log.read_text(encoding="utf-8", errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Kill PID 1 from outside (the namespaces die with it) and remove what is left."""
        if self.alive():
            os.kill(self.pid1, 9)
        kill = self.cgroup / "cgroup.kill"
        if kill.exists():
            kill.write_text("1")
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
        remove_cgroup(self.cgroup)
        if self._console is not None:
            self._console.join(timeout=5)
        shutil.rmtree(self.scratch, ignore_errors=True)


def remove_cgroup(top: Path) -> None:
    """Remove a cgroup and everything below it, deepest first, once its processes are gone."""
    if not top.is_dir():
        return
    end = time.monotonic() + 10
    while True:
        folders = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        try:
            for folder in [*folders, top]:
                folder.rmdir()
            return
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.1)


def cgroup2_root() -> Path | None:
    """Where the unified (v2) cgroup hierarchy is mounted; None on a v1-only host."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        before, _, after = line.partition(" - ")
        if after.split()[0] == "cgroup2":
            return Path(before.split()[4])
    return None


def problem() -> str | None:
    """Why this machine cannot boot a test systemd; None when it can."""
    if os.geteuid() != 0:
        return "not root: a private systemd needs mount, PID and cgroup namespaces"
    if not SYSTEMD.exists():
        return f"{SYSTEMD} is not installed"
    for tool in ("unshare", "nsenter", "setpriv", "systemctl", "journalctl", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    root = cgroup2_root()
    if root is None:
        return "no cgroup2 hierarchy mounted (systemd 252 needs one for its services)"
    if not os.access(root, os.W_OK):
        return f"the cgroup2 hierarchy at {root} is read-only here"
    probe = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount", "--net", "--cgroup", "--uts", "--ipc", "true"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        return f"namespaces are refused here: {probe.stderr.strip()}"
    return None


def _pid1_of(starter: int) -> int | None:
    """The child unshare forked (PID 1 of the new namespaces), once it exists."""
    try:
        children = Path(f"/proc/{starter}/task/{starter}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def boot(scratch: Path, binds: dict[Path, str]) -> Machine:
    """Boot systemd as PID 1 of new namespaces over an overlay of /, scratch space in `scratch`.

    `binds` maps host folders to paths inside, bound read-only. Returns once systemd says
    `running` (or `degraded`); stops everything and raises when it does not get there.
    """
    started = time.monotonic()
    root = cgroup2_root()
    assert root is not None
    cgroup = root / f"dropd-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    cgroup.mkdir()
    scratch.mkdir(parents=True, exist_ok=True)
    (scratch / "ns").mkdir()
    console_log = scratch / "console.log"
    master, slave = os.openpty()
    pair = [str(host_path) for host, inside in binds.items() for host_path in (host, inside)]
    (scratch / "setup.sh").write_text(SETUP, encoding="utf-8")

    def into_cgroup() -> None:
        (cgroup / "cgroup.procs").write_text("0")

    env = {
        "PATH": PATH,
        "KEPT": " ".join(sorted(KEPT_UNITS)),
        "TARGET": TARGET,
        "MACHINE_ID": uuid.uuid4().hex,
    }
    command = [
        "setpriv", "--pdeathsig", "KILL", "--",
        "unshare", "--pid", "--fork", "--kill-child", "--mount", "--propagation", "private",
        "--uts", "--ipc", "--net", "--cgroup",
        "sh", str(scratch / "setup.sh"), str(scratch / "ns"), os.ttyname(slave), *pair,
    ]  # fmt: skip
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env=env,
        preexec_fn=into_cgroup,  # one write, before exec
    )
    os.close(slave)
    console = threading.Thread(target=_drain, args=(master, console_log), daemon=True)
    console.start()
    machine = Machine(0, process, cgroup, scratch, console_log, _console=console)
    try:
        end = time.monotonic() + BOOT_DEADLINE
        while time.monotonic() < end and process.poll() is None:
            pid1 = _pid1_of(process.pid)
            if pid1 is not None:
                machine.pid1 = pid1
                if machine.alive():
                    state = machine.run("systemctl", "is-system-running", check=False)
                    if state.stdout.strip() in ("running", "degraded"):
                        machine.boot_seconds = time.monotonic() - started
                        return machine
            time.sleep(0.05)
        raise AssertionError(f"the test systemd did not come up:\n{machine.console()}")
    except BaseException:
        machine.stop()
        raise


def _drain(master: int, log: Path) -> None:
    """Keep /dev/console from filling up, and keep what it said for a failing test."""
    with open(log, "ab") as out:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            out.write(chunk)
            out.flush()
    os.close(master)
