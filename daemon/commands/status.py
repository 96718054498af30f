"""`dropd status`: the daemon's `state_dir/status.json`, read for people and for monitoring.

Exit codes: 0 when dropd runs and every group of the config is `Valid` or `Processing`; 1
when something needs a person (a group in `Error`, dropd not running, no status yet, a group
the running dropd has not loaded, a status not refreshed); 2 when the config is bad. A bad
config still shows what the running dropd says (it keeps the config it last loaded): the
status file is looked for in the broken file's `[daemon] state_dir` where that reads, else
in the default one, and the config's problems follow on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from daemon.base.errors import ConfigError, os_reason
from daemon.base.steps import Step
from daemon.base.timestamps import iso, utc_now
from daemon.config.load import load_config, read_toml
from daemon.config.model import Config, DaemonSettings, Group
from daemon.config.tables import read_daemon
from daemon.observe.liveness import is_running
from daemon.observe.status import REFRESH_SECONDS, STATUS_FILE, GroupState, GroupStatus

# A running dropd rewrites its status every REFRESH_SECONDS; three misses mean its loop is stuck.
STALE_SECONDS = 3 * REFRESH_SECONDS
UNKNOWN = "Unknown"  # a group of the config that the status file does not list


@dataclass(frozen=True, slots=True)
class StatusFile:
    """What `status.json` says, as written by the daemon."""

    updated: datetime
    pid: int | None
    pid_start_ticks: int | None
    started: str | None
    groups: dict[str, GroupStatus]  # by key, in the file's order


@dataclass(frozen=True, slots=True)
class StatusReport:
    """Everything `dropd status` shows: the daemon, then each group of the config."""

    status_file: Path
    running: bool
    pid: int | None
    started: str | None  # when that dropd started
    updated: str | None
    age_seconds: float | None
    groups: list[GroupStatus]
    problem: str = ""  # why there is no status to show (no file, unreadable)
    notes: list[str] = field(default_factory=list)

    def exit_code(self) -> int:
        """1 when a person should look (see the module's docstring), else 0."""
        states = {g.status for g in self.groups}
        stale = self.age_seconds is not None and self.age_seconds > STALE_SECONDS
        needs_person = GroupState.ERROR.value in states or UNKNOWN in states
        return 1 if self.problem or not self.running or stale or needs_person else 0


def status_command(config_path: Path, as_json: bool) -> int:
    """`dropd status`: print the report (text or JSON); returns the exit code."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        report = build_report_without_config(state_dir_of(config_path), utc_now())
        _print(report, as_json, config_problems=exc.problems)
        print(f"{config_path}: the config has problems:", file=sys.stderr)
        print("\n".join(exc.problems), file=sys.stderr)
        return 2
    report = build_report(config, utc_now())
    _print(report, as_json)
    return report.exit_code()


def _print(report: StatusReport, as_json: bool, config_problems: list[str] | None = None) -> None:
    if as_json:
        data = report_json(report)
        if config_problems is not None:
            data["config_problems"] = config_problems
            data["exit_code"] = 2
        print(json.dumps(data, indent=2))
    else:
        print(render_text(report, utc_now()))


def state_dir_of(config_path: Path) -> Path:
    """The state_dir a config names, even when the config is broken elsewhere: its `[daemon]
    state_dir` where that reads, else the default. The running dropd may still use it."""
    path = Path(os.path.abspath(config_path))
    try:
        raw = read_toml(path)
    except ConfigError:
        return DaemonSettings().state_dir
    return read_daemon(raw.get("daemon"), path.parent, []).state_dir


def build_report_without_config(state_dir: Path, now: datetime) -> StatusReport:
    """What the status file in `state_dir` says, every group it lists, when the config cannot
    be read: a running dropd keeps the config it last loaded."""
    path = state_dir / STATUS_FILE
    try:
        found = read_status_file(path)
    except FileNotFoundError:
        why = f"no status to show: {path} does not exist, so no dropd has run with it"
        return StatusReport(path, False, None, None, None, None, [], problem=why)
    except (OSError, ValueError) as exc:
        return StatusReport(path, False, None, None, None, None, [], problem=_unreadable(path, exc))
    return _report_of(path, found, list(found.groups.values()), now, [])


def build_report(config: Config, now: datetime) -> StatusReport:
    """Read the status file of `config` and tell whether the dropd that wrote it runs."""
    path = config.daemon.state_dir / STATUS_FILE
    try:
        found = read_status_file(path)
    except FileNotFoundError:
        why = (
            f"no status yet: {path} does not exist, so dropd has not run with this "
            "config's state_dir; start it (systemctl start dropd)"
        )
        return _without_file(config, path, why)
    except (OSError, ValueError) as exc:
        return _without_file(config, path, _unreadable(path, exc))
    running = _running(found)
    groups = [_group_entry(g, found.groups.get(key), running) for key, g in config.groups.items()]
    return _report_of(path, found, groups, now, _notes(config, found))


def _running(found: StatusFile) -> bool:
    return found.pid is not None and is_running(found.pid, found.pid_start_ticks)


def _report_of(
    path: Path, found: StatusFile, groups: list[GroupStatus], now: datetime, notes: list[str]
) -> StatusReport:
    return StatusReport(
        path,
        _running(found),
        found.pid,
        found.started,
        iso(found.updated),
        round(max(0.0, (now - found.updated).total_seconds()), 1),
        groups,
        notes=notes,
    )


def read_status_file(path: Path) -> StatusFile:
    """Parse `status.json`. Raises OSError if it cannot be read, ValueError if it is no
    status file."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("groups"), list):
        raise ValueError("it is not a dropd status file")
    updated = datetime.fromisoformat(str(data.get("updated", "")).replace("Z", "+00:00"))
    if updated.tzinfo is None:
        raise ValueError("its `updated` time has no time zone")
    entries = [GroupStatus.from_json(g) for g in data["groups"] if isinstance(g, dict)]
    groups = {entry.group: entry for entry in entries}
    return StatusFile(
        updated,
        _int_or_none(data.get("pid")),
        _int_or_none(data.get("pid_start_ticks")),
        data["started"] if isinstance(data.get("started"), str) else None,
        groups,
    )


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _unreadable(path: Path, exc: OSError | ValueError) -> str:
    if isinstance(exc, PermissionError):
        why = "permission denied; run `dropd status` as root or as dropd's user"
        return f"no status to show: {path} cannot be read: {why}"
    if isinstance(exc, OSError):
        return f"no status to show: {path} cannot be read: {os_reason(exc)}"
    return (
        f"no status to show: {path} is not a dropd status file ({exc}); a running dropd "
        f"rewrites it within {REFRESH_SECONDS:g} s"
    )


def _without_file(config: Config, path: Path, why: str) -> StatusReport:
    groups = [_unknown(g, "no status yet") for g in config.groups.values()]
    return StatusReport(path, False, None, None, None, None, groups, problem=why)


def _group_entry(group: Group, entry: GroupStatus | None, running: bool) -> GroupStatus:
    if entry is None:
        why = (
            "the running dropd has not loaded this group; reload it (systemctl reload dropd)"
            if running
            else "dropd has not run with this group yet; start it (systemctl start dropd)"
        )
        return _unknown(group, why)
    return replace(entry, group=group.key, friendly_name=group.friendly_name)


def _unknown(group: Group, reason: str) -> GroupStatus:
    return GroupStatus(
        group=group.key,
        friendly_name=group.friendly_name,
        status=UNKNOWN,
        step="",
        reason=reason,
        role=None,
        last_upload=None,
        files_waiting=None,
        batches_failed=None,
        batches_held=None,
    )


def _notes(config: Config, found: StatusFile) -> list[str]:
    gone = [key for key in found.groups if key not in config.groups]
    if not gone:
        return []
    return [
        f"the status file also lists {', '.join(gone)}, no longer in {config.path}; "
        "reload dropd (systemctl reload dropd)"
    ]


def report_json(report: StatusReport) -> dict[str, Any]:
    """The report as one JSON object for monitoring."""
    data = asdict(report)
    data["status_file"] = str(report.status_file)
    data["groups"] = [group.to_json() for group in report.groups]
    data["exit_code"] = report.exit_code()
    return data


def render_text(report: StatusReport, now: datetime) -> str:
    """The report for a person: a header line, then a block per group."""
    lines = [_header(report)]
    lines += [f"note: {note}" for note in report.notes]
    for group in report.groups:
        lines += ["", *_group_block(group, now)]
    return "\n".join(lines)


def _header(report: StatusReport) -> str:
    if report.problem:
        return report.problem
    as_of = f"{report.updated} ({ago(report.age_seconds or 0.0)})"
    if not report.running:
        gone = f" (pid {report.pid} is gone)" if report.pid is not None else ""
        return f"dropd is not running{gone}; last known status from {as_of}"
    header = f"dropd running (pid {report.pid}), status as of {as_of}"
    if (report.age_seconds or 0.0) > STALE_SECONDS:
        header += (
            f"; it should rewrite its status every {REFRESH_SECONDS:g} s, so its loop may be "
            "stuck: see `journalctl -u dropd` (systemd's watchdog restarts a stuck dropd)"
        )
    return header


def _group_block(group: GroupStatus, now: datetime) -> list[str]:
    title = group.group
    if group.friendly_name and group.friendly_name != title:
        title += f" ({group.friendly_name})"
    rows = [("status", group.status)]
    if group.step:
        rows.append(("step", group.step))
    if group.reason:
        rows.append(("reason", group.reason))
    if group.batch:
        where = "held" if group.step == Step.GUARD else "failed"
        rows.append(("batch", f"{group.batch} (in {where}/)"))
    if group.status != UNKNOWN:
        failed = str(group.batches_failed)
        if group.batches_failed and group.last_failed:
            failed += f" (newest {group.last_failed})"
        rows += [
            ("last upload", _when(group.last_upload, now)),
            ("files waiting", str(group.files_waiting)),
            ("failed batches", failed),
            ("held batches", str(group.batches_held)),
            ("role", str(group.role)),
        ]
    return [title, *(f"  {label + ':':<16}{value}" for label, value in rows)]


def _when(moment: str | None, now: datetime) -> str:
    if not moment:
        return "never"
    try:
        then = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    except ValueError:
        return moment
    return f"{moment} ({ago((now - then).total_seconds())})"


def ago(seconds: float) -> str:
    """A duration in the largest whole unit: `3 s ago`, `5 min ago`, `2 h ago`, `3 d ago`."""
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return f"{int(seconds)} s ago"


def run(args: argparse.Namespace) -> int:
    """`dropd status`, as the command line asked for it."""
    return status_command(args.config, args.json)
