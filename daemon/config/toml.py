"""Reading TOML tables with every problem as `key.path: why`, and checking their values.

Nothing here knows dropd's keys: `config` says which keys there are and what they mean.
A `Table` notes each problem and goes on, so that one run reports them all.
"""

from __future__ import annotations

import enum
import ipaddress
import json
import math
import os
import re
import stat
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_E = TypeVar("_E", bound=enum.Enum)
PathKind = Literal["folder", "file", "any"]  # "any": a file or a folder, as a CA bundle may be


@dataclass(frozen=True, slots=True)
class Bounds:
    """The range a number must fall in."""

    low: float = 0
    high: float = math.inf
    above: bool = False  # the number must be greater than `low`, not equal to it

    def describe(self) -> str:
        """The range in words, such as "between 0 and 100", for a message."""
        if self.high < math.inf:
            return f"between {self.low:g} and {self.high:g}"
        return f"above {self.low:g}" if self.above else f"of {self.low:g} or more"

    def misfit(self, value: float) -> str | None:
        """Whether `value` is too "small" or too "large"; None when it fits."""
        if value < self.low or (self.above and value == self.low):
            return "small"
        return "large" if value > self.high else None


class Table:
    """One TOML table being read: its key path, the keys asked for, the problems found."""

    def __init__(self, raw: Mapping[str, Any], where: str, problems: list[str]) -> None:
        self.raw = raw
        self.where = where
        self.problems = problems
        self.known: list[str] = []
        self.bad: set[str] = set()

    def problem(self, key: str | None, why: str) -> None:
        """Note a problem with `key`, or with the table itself when `key` is None."""
        if key is not None:
            self.bad.add(key)
        self.problems.append(f"{self.where if key is None else join_key(self.where, key)}: {why}")

    def get(self, key: str) -> object:
        """The value at `key`, None when absent (TOML has no null); `key` becomes known."""
        if key not in self.known:
            self.known.append(key)
        return self.raw.get(key)

    def reject_unknown(self, handled: Collection[str] = ()) -> None:
        """Note a problem for each key neither asked for with get() nor `handled` apart."""
        known = ", ".join(self.known)
        for key in self.raw:
            if key not in self.known and key not in handled:
                self.problem(key, f"unknown key; remove it (known keys: {known})")

    def text(self, key: str, *, example: str, default: str | None = None) -> str:
        """The string at `key`, else `default`; "" and a problem if it is wrong or missing."""
        value = self.get(key)
        if value is None:
            if default is None:
                self.problem(key, f"missing; add {key} = {example}")
            return default or ""
        if not isinstance(value, str):
            why = f"is not a string; write it in quotes, such as {key} = {example}"
        elif not value.strip():
            why = f"is empty; give a value, such as {key} = {example}"
        else:
            return value
        self.problem(key, f"{quote(value)} {why}")
        return ""

    def path(self, key: str, base: Path, *, example: str, required: bool = False) -> Path | None:
        """The path at `key`, made absolute against `base`; None if absent or wrong."""
        value = self.text(key, example=example, default=None if required else "")
        if value.startswith("~") or "\x00" in value:
            trouble = "holds a NUL" if "\x00" in value else "starts with ~, which is not expanded"
            self.problem(key, f"{quote(value)} {trouble}; give the full path, such as {example}")
            return None
        # normpath, not resolve(): reading the TOML must not look at the folders themselves.
        return Path(os.path.normpath(base / value)) if value else None

    def choice(self, key: str, default: _E) -> _E:
        """The member of `default`'s enum whose value is at `key`, else `default`."""
        value = self.get(key)
        for member in type(default):
            if value == member.value:
                return member
        if value is not None:
            allowed = ", ".join(quote(member.value) for member in type(default))
            self.problem(key, f"{quote(value)} is not a choice; use one of: {allowed}")
        return default

    def number(self, key: str, default: float, bounds: Bounds, hint: str) -> float:
        """The number at `key` within `bounds`, else `default` (and a problem if it is wrong)."""
        value = self.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.problem(key, _not_a_number(value, "a number", hint))
        elif not math.isfinite(value):
            self.problem(key, f"{quote(value)} is not a finite number; {hint}")
        elif self._fits(key, value, bounds, "a number"):
            return float(value)
        return default

    def whole(self, key: str, default: int, bounds: Bounds, example: str) -> int:
        """The whole number at `key` within `bounds`, else `default` (and a problem if wrong)."""
        value = self.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            hint = f"give a whole number such as {example}"
            self.problem(key, _not_a_number(value, "a whole number", hint))
        elif self._fits(key, value, bounds, "a whole number"):
            return value
        return default

    def _fits(self, key: str, value: float, bounds: Bounds, noun: str) -> bool:
        misfit = bounds.misfit(value)
        if misfit is not None:
            self.problem(key, f"{quote(value)} is too {misfit}; give {noun} {bounds.describe()}")
        return misfit is None


def sections(raw: object, where: str, problems: list[str]) -> list[tuple[str, Table]]:
    """Each [where.NAME] table, by name; a problem for anything that is not a table."""
    if raw is None:
        return []
    if not isinstance(raw, dict):
        problems.append(f"{where}: {quote(raw)} is not a table; write [{where}.NAME] sections")
        return []
    tables = [
        (name, subtable(value, join_key(where, name), problems)) for name, value in raw.items()
    ]
    return [(name, table) for name, table in tables if table is not None]


def subtable(raw: object, where: str, problems: list[str]) -> Table | None:
    """`raw` as the table at `where`; None, and a problem, if it is not a table."""
    if isinstance(raw, dict):
        return Table(raw, where, problems)
    problems.append(f"{where}: {quote(raw)} is not a table; write it as a [{where}] section")
    return None


def join_key(where: str, key: str) -> str:
    """Extend a key path, quoting `key` as TOML would need it."""
    part = key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)
    return f"{where}.{part}" if where else part


def quote(value: object) -> str:
    """A value as it was written in the TOML, for a message to quote."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return "a table" if isinstance(value, dict) else "a list"
    return str(value)


def _not_a_number(value: object, noun: str, hint: str) -> str:
    if isinstance(value, str) and value.strip().replace(".", "", 1).isdigit():
        return f"{quote(value)} is a string, not {noun}; remove the quotes"
    return f"{quote(value)} is not {noun}; {hint}"


def figure(value: float) -> str:
    """A number for a message: 10, not 10.0."""
    return str(int(value)) if value.is_integer() else str(value)


def url_problem(url: str) -> str | None:
    """What is wrong with `url` as an address of the API, or None."""
    shown = quote(url)
    try:
        parts = urlsplit(url)
        host, _ = parts.hostname, parts.port
    except ValueError:
        return f"{shown} is not a valid URL; give one such as https://host/path"
    if parts.username is not None:
        # No quoting here: the value holds a password, maybe.
        return "holds a user name or password; remove it, as secrets never sit in the TOML"
    if parts.scheme not in ("https", "http") or not host:
        return f"{shown} is not a full https:// URL; give one such as https://host/path"
    if "?" in url or "#" in url:
        return f"{shown} has a query or fragment; remove everything from the ? or #"
    if parts.scheme == "http" and not _is_loopback(host):
        return f"{shown} is plain http:// to a host that is not loopback; use https://"
    return None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_path(where: str, path: Path, want: PathKind, problems: list[str]) -> None:
    """Note a problem if `path` is missing or not the kind of thing wanted."""
    try:
        is_folder = stat.S_ISDIR(path.stat().st_mode)
    except (FileNotFoundError, NotADirectoryError):
        problems.append(f"{where}: {path} does not exist; create it or fix the path")
        return
    except OSError as exc:
        problems.append(f"{where}: {path} cannot be looked at ({exc.strerror}); check permissions")
        return
    if want == "folder" and not is_folder:
        problems.append(f"{where}: {path} is not a folder; give the path of a folder")
    elif want == "file" and is_folder:
        problems.append(f"{where}: {path} is a folder; give the path of a file")
