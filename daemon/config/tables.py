"""Each table of dropd's TOML read into its settings: [daemon], [environments.NAME],
[groups.NAME], and the checks that span tables: group folders apart from each other and
from the state_dir, as written and once symbolic links are followed.

`config.load_config` puts them together; `toml_checks` reads the values of any table.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.base.errors import ConfigError
from daemon.config.model import (
    DaemonSettings,
    DoneMarkers,
    Environment,
    Group,
    SecretKind,
    SecretSource,
    TokenAuth,
    Validation,
)
from daemon.config.toml import Bounds, Table, figure, join_key, quote, subtable, url_problem

_GROUP_NAME = re.compile(r"[A-Za-z0-9._-]+")
_SECONDS_HINT = "give seconds as a number such as 10 or 0.5"
_PERCENT_HINT = "give a percentage such as 50, or 0 to turn the guard off"
_SECRET_KEYS = "client_secret_file, client_secret_env or client_secret_credential"
_SECRET_RULES = {  # how a name must look, and the message when it does not
    SecretKind.ENV: (
        re.compile(r"[A-Za-z_][A-Za-z0-9_]*"),
        "is not an environment variable name; use letters, digits and _, not starting with a digit",
    ),
    SecretKind.CREDENTIAL: (
        re.compile(r"(?!\.\.?$)[^/\x00]+"),
        "is not a credential name; give the NAME of LoadCredential=NAME:PATH, without any /",
    ),
}
_SECRET_EXAMPLES = {
    SecretKind.FILE: '"/etc/dropd/test.secret"',
    SecretKind.ENV: '"DROPD_TEST_SECRET"',
    SecretKind.CREDENTIAL: '"dropd-test"',
}
_ABOVE_ZERO = Bounds(above=True)
_DAEMON_SECONDS = {
    "settle_seconds": Bounds(),
    "quiet_seconds": _ABOVE_ZERO,
    "max_wait_seconds": _ABOVE_ZERO,
    "poll_seconds": Bounds(),
    "retry_initial_seconds": _ABOVE_ZERO,
    "retry_max_seconds": Bounds(),
    "give_up_after_seconds": Bounds(),
    "connect_timeout_seconds": _ABOVE_ZERO,
    "read_timeout_seconds": _ABOVE_ZERO,
}


def read_toml(path: Path) -> dict[str, Any]:
    """The parsed TOML file. Raises ConfigError naming the file if it cannot be had."""
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except (FileNotFoundError, NotADirectoryError):
        why = "does not exist; create it (see config/dropd.example.toml) or fix the path"
    except IsADirectoryError:
        why = "is a folder; give the path of the TOML file"
    except OSError as exc:
        why = f"cannot be read ({exc.strerror}); check its permissions"
    except UnicodeDecodeError:
        why = "is not UTF-8 text; save it as UTF-8"
    except tomllib.TOMLDecodeError as exc:
        why = f"is not valid TOML: {exc}; fix the syntax there"
    raise ConfigError([f"{path}: {why}"])


def read_daemon(raw: object, base: Path, problems: list[str]) -> DaemonSettings:
    """The [daemon] table's settings; the defaults where it or a key is absent."""
    table = subtable({} if raw is None else raw, "daemon", problems)
    default = DaemonSettings()
    if table is None:
        return default
    state_dir = table.path("state_dir", base, example='"/var/lib/dropd"') or default.state_dir
    seconds: dict[str, Any] = {
        key: table.number(key, getattr(default, key), bounds, _SECONDS_HINT)
        for key, bounds in _DAEMON_SECONDS.items()
    }
    settings = DaemonSettings(
        state_dir=state_dir,
        log_format=table.choice("log_format", default.log_format),
        metrics_port=table.whole("metrics_port", 0, Bounds(high=65535), example="9100"),
        sent_retention_days=table.whole("sent_retention_days", 0, Bounds(), example="30"),
    )
    _check_retry_order(table, seconds["retry_initial_seconds"], seconds["retry_max_seconds"])
    table.reject_unknown()
    return dataclasses.replace(settings, **seconds)


def _check_retry_order(table: Table, initial: float, most: float) -> None:
    if initial > most and not table.bad & {"retry_initial_seconds", "retry_max_seconds"}:
        why = (
            f"is more than retry_max_seconds ({figure(most)}); lower it or raise retry_max_seconds"
        )
        table.problem("retry_initial_seconds", f"{figure(initial)} {why}")


def read_environment(name: str, table: Table, base: Path) -> Environment:
    """The [environments.NAME] table's settings."""
    token_url = _url(table, "token_url", '"https://apps-test.iu.edu/uaa-stg/oauth/token"')
    base_url = _url(
        table, "base_url", '"https://lms-lti-3rdpartyprovisioning-stg.apps-test.iu.edu"'
    )
    environment = Environment(
        name=name,
        token_url=token_url,
        base_url=base_url.rstrip("/"),
        client_id=table.text("client_id", example='"my-unit"'),
        secret=_secret(table, base),
        ca_bundle=table.path("ca_bundle", base, example='"/etc/ssl/certs/campus.pem"'),
        token_auth=table.choice("token_auth", TokenAuth.BASIC),
    )
    table.reject_unknown(handled={"client_secret"})
    return environment


def _url(table: Table, key: str, example: str) -> str:
    url = table.text(key, example=example)
    why = url_problem(url) if url else None
    if why is not None:
        table.problem(key, why)
    return url


def _secret(table: Table, base: Path) -> SecretSource:
    """Where the environment's client secret is to be read from: exactly one source."""
    if "client_secret" in table.raw:
        # The value is never quoted: it is likely the real secret.
        table.problem(
            "client_secret", f"secrets never sit in the TOML; remove it and use {_SECRET_KEYS}"
        )
    given = [kind for kind in SecretKind if table.get(kind.value) is not None]
    if len(given) == 1:
        return SecretSource(given[0], _secret_value(table, given[0], base))
    if given:
        names = [kind.value for kind in given]
        listed = f"{', '.join(names[:-1])} and {names[-1]}"
        table.problem(None, f"{listed} are given; keep exactly one of them")
    elif "client_secret" not in table.raw:
        table.problem(None, f"no client secret source; give one of {_SECRET_KEYS}")
    return SecretSource(SecretKind.FILE, "")


def _secret_value(table: Table, kind: SecretKind, base: Path) -> str:
    example = _SECRET_EXAMPLES[kind]
    if kind is SecretKind.FILE:
        return str(table.path(kind.value, base, example=example, required=True) or "")
    value = table.text(kind.value, example=example)
    pattern, why = _SECRET_RULES[kind]
    if value and not pattern.fullmatch(value):
        table.problem(kind.value, f"{quote(value)} {why}")
    return value


def read_group(key: str, table: Table, base: Path, environments: Sequence[str]) -> Group:
    """The [groups.KEY] table's settings; `environments` are the names defined."""
    group = Group(
        key=key,
        environment=_environment_name(table, environments),
        folder=table.path("folder", base, example='"/srv/drop/music"', required=True) or Path(),
        group_name=_group_name(table, key),
        friendly_name=table.text("friendly_name", example='"School of Music"', default=key),
        done_markers=table.choice("done_markers", DoneMarkers.AUTO),
        validation=table.choice("validation", Validation.STRICT),
        max_upload_bytes=table.whole("max_upload_bytes", 0, Bounds(), example="1000000"),
        max_deleted_percent=table.number(
            "max_deleted_percent", 50.0, Bounds(high=100), _PERCENT_HINT
        ),
        min_rows_for_guard=table.whole("min_rows_for_guard", 100, Bounds(low=1), example="100"),
    )
    table.reject_unknown()
    return group


def _environment_name(table: Table, defined: Sequence[str]) -> str:
    name = table.text("environment", example=quote(defined[0] if defined else "test"))
    if name and name not in defined:
        hint = f"add [{join_key('environments', name)}]"
        if defined:
            hint += " or use one of: " + ", ".join(defined)
        table.problem("environment", f"{quote(name)} is not defined under [environments]; {hint}")
    return name


def _group_name(table: Table, key: str) -> str:
    name = table.text("group_name", example=quote(key), default=key)
    if "group_name" in table.bad or (_GROUP_NAME.fullmatch(name) and name not in (".", "..")):
        return name
    origin = (
        "" if "group_name" in table.raw else " (the table's key, used when group_name is not set)"
    )
    why = 'cannot go into the upload URL; use letters, digits, ".", "_" and "-" (not "." or "..")'
    table.problem("group_name", f"{quote(name)}{origin} {why}")
    return name


class _Overlap(enum.Enum):
    """How one path lies to another."""

    SAME = "same"
    INSIDE = "inside"
    HOLDS = "holds"


@dataclass(frozen=True, slots=True)
class _Placed:
    """A path as written in the config, and where it leads once links are followed."""

    path: Path
    real: Path

    @classmethod
    def of(cls, path: Path) -> _Placed:
        # realpath, not resolve(strict=True): a folder that does not exist yet (a state_dir
        # dropd makes at start) is still followed as far as it exists.
        return cls(path, Path(os.path.realpath(path)))

    def shown(self, through_links: bool) -> str:
        if through_links and self.real != self.path:
            return f"{self.path} ({self.real} once links are followed)"
        return str(self.path)


def _overlap(one: _Placed, other: _Placed) -> tuple[_Overlap, bool] | None:
    """How `one` lies to `other`, as written or else through links (the bool: through links);
    None when they are apart."""
    for through_links, a, b in ((False, one.path, other.path), (True, one.real, other.real)):
        if a == b:
            return _Overlap.SAME, through_links
        if a.is_relative_to(b):
            return _Overlap.INSIDE, through_links
        if b.is_relative_to(a):
            return _Overlap.HOLDS, through_links
    return None


def check_folders_apart(groups: Sequence[Group], problems: list[str]) -> None:
    """Two groups sharing a folder, or one inside the other, would take each other's files."""
    placed = [(group, _Placed.of(group.folder)) for group in groups if group.folder.is_absolute()]
    written = _overlaps([folder.path for _, folder in placed])
    real = _overlaps([folder.real for _, folder in placed])
    for index, other_index in sorted(written.keys() | real.keys()):
        links = (index, other_index) not in written
        how = real[index, other_index] if links else written[index, other_index]
        (group, folder), (other, other_folder) = placed[index], placed[other_index]
        other_name = join_key("groups", other.key)
        shown = other_folder.shown(links)
        if how is _Overlap.SAME:
            also = f"the folder of {other_name}" + (f" {shown}" if links else "")
            why = f"is also {also}; give each group a folder of its own"
        elif how is _Overlap.INSIDE:
            why = f"is inside {other_name}'s folder {shown}; move it beside, not inside"
        else:
            why = f"holds {other_name}'s folder {shown}; move that beside, not inside"
        problems.append(f"{join_key('groups', group.key)}.folder: {folder.shown(links)} {why}")


def _overlaps(paths: Sequence[Path]) -> dict[tuple[int, int], _Overlap]:
    """Every pair of `paths` that are not apart, as {(i, j): how path i lies to path j} with
    j < i. Looked up by ancestors, not compared pair by pair: 1,000 groups make half a
    million pairs."""
    found: dict[tuple[int, int], _Overlap] = {}
    at: dict[tuple[str, ...], list[int]] = {}  # a path: the indexes of the paths equal to it
    below: dict[tuple[str, ...], list[int]] = {}  # a path: the indexes of the paths inside it
    for index, path in enumerate(paths):
        parts = path.parts
        ancestors = [parts[:length] for length in range(1, len(parts))]
        for other in at.get(parts, []):
            found[index, other] = _Overlap.SAME
        for ancestor in ancestors:
            for other in at.get(ancestor, []):
                found[index, other] = _Overlap.INSIDE
        for other in below.get(parts, []):
            found[index, other] = _Overlap.HOLDS
        at.setdefault(parts, []).append(index)
        for ancestor in ancestors:
            below.setdefault(ancestor, []).append(index)
    return found


def check_state_apart(state_dir: Path, groups: Sequence[Group], problems: list[str]) -> None:
    """dropd's state_dir and a group's folder never hold one another: as a drop folder, intake
    would take dropd's own status.json for a dropped file; inside one, dropd's state sits
    where the people who drop files reach it; holding one, the state_dir dropd makes 0700
    shuts them out."""
    state = _Placed.of(state_dir)
    keep = "keep dropd's state outside the drop folders (e.g. /var/lib/dropd)"
    for group in groups:
        if not group.folder.is_absolute():
            continue
        folder = _Placed.of(group.folder)
        found = _overlap(state, folder)
        if found is None:
            continue
        how, links = found
        name = join_key("groups", group.key)
        if how is _Overlap.SAME:
            why = f"is also {name}'s folder" + (f" {folder.shown(links)}" if links else "")
            why += f"; {keep}"
        elif how is _Overlap.INSIDE:
            why = f"is inside {name}'s folder {folder.shown(links)}; {keep}"
        else:
            why = (
                f"is not allowed: it holds {name}'s folder {folder.shown(links)}; give dropd's "
                "state a folder of its own, beside the drop folders (e.g. /var/lib/dropd)"
            )
        problems.append(f"daemon.state_dir: {state.shown(links)} {why}")
