"""What each key of the TOML means, kept on its settings field beside its default.

A settings field that is a key carries a `Key` in its metadata (`field(metadata=about(...))`):
its meaning for a sysadmin, its unit and the values it allows. The configuration reference
and the example configs are written from it, and the loader takes each number's range from
it, so that a default, a range or a meaning is written once, in the code.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_type_hints

from daemon.config.toml import Bounds, figure

__all__ = [
    "KEY",
    "REQUIRED",
    "Key",
    "Section",
    "Setting",
    "about",
    "default_of",
    "key_of",
    "settings_of",
    "toml_value",
]

KEY = "dropd.key"  # the metadata entry of a settings field that is a key of the TOML
REQUIRED = dataclasses.MISSING  # the default of a field the TOML must give
_ZERO_OR_MORE = Bounds()


@dataclass(frozen=True, slots=True)
class Key:
    """One key as a sysadmin needs to know it; its default is the field's own."""

    meaning: str  # one or two sentences a sysadmin can act on
    unit: str = ""  # what a number counts: "seconds", "bytes", ...
    bounds: Bounds = _ZERO_OR_MORE  # the range a number must fall in
    allowed: str = ""  # what a value must be, in words, beyond its type
    # For an enum: what each of its members does.
    choices: Mapping[enum.Enum, str] = dataclasses.field(default_factory=dict)
    # For a field given by one of several keys (named by the members' values), such as the
    # client secret: each of those keys, of which exactly one is given.
    one_of: Mapping[enum.Enum, Key] = dataclasses.field(default_factory=dict)
    default: str = ""  # the default in words, where the field's own is not the whole story
    type: str = ""  # the value's type in words, for a key that is not a field of its own
    # True: a reload keeps the running value and says dropd must be restarted to change it.
    restart: bool = False


def about(
    meaning: str,
    *,
    unit: str = "",
    bounds: Bounds = _ZERO_OR_MORE,
    allowed: str = "",
    choices: Mapping[enum.Enum, str] | None = None,
    one_of: Mapping[enum.Enum, Key] | None = None,
    default: str = "",
    restart: bool = False,
) -> dict[str, Key]:
    """The metadata of a settings field that is a key: `field(metadata=about("..."))`;
    `restart=True` for a key a reload cannot change."""
    found = Key(
        meaning,
        unit,
        bounds,
        allowed,
        dict(choices or {}),
        dict(one_of or {}),
        default,
        restart=restart,
    )
    return {KEY: found}


@dataclass(frozen=True, slots=True)
class Section:
    """A table of the TOML (or each of a kind, such as [groups.NAME]), and its settings."""

    header: str  # as written in the TOML: "daemon", "groups.NAME"
    settings: type  # the settings dataclass the table becomes
    about: str  # what the table is for, for a sysadmin

    @property
    def kind(self) -> str:
        """The top-level key the table sits under: "groups" for [groups.NAME]."""
        return self.header.split(".", 1)[0]


@dataclass(frozen=True, slots=True)
class Setting:
    """A field of a settings class that the TOML sets, with what it means."""

    name: str  # the field's name
    key: Key
    type: Any  # the field's type, resolved
    default: Any  # the field's default, or REQUIRED

    @property
    def names(self) -> tuple[str, ...]:
        """Its keys in the TOML: its own name, or each key of which exactly one is given."""
        if self.key.one_of:
            return tuple(str(member.value) for member in self.key.one_of)
        return (self.name,)


def settings_of(cls: type) -> list[Setting]:
    """The fields of the settings class `cls` that are keys of the TOML, in their order."""
    types = get_type_hints(cls)
    return [
        Setting(item.name, item.metadata[KEY], types[item.name], item.default)
        for item in dataclasses.fields(cls)
        if KEY in item.metadata
    ]


def key_of(cls: type, name: str) -> Key:
    """The `Key` of the field `name` of the settings class `cls`."""
    found: Key = _field(cls, name).metadata[KEY]
    return found


def default_of(cls: type, name: str) -> Any:
    """The default of the field `name` of the settings class `cls` (one that has one)."""
    default = _field(cls, name).default
    if default is dataclasses.MISSING:
        raise LookupError(f"{cls.__name__}.{name} has no default")
    return default


def toml_value(value: object) -> str:
    """`value` as it is written in the TOML: "/var/lib/dropd", 10, "json"."""
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | Path):
        text = str(value).replace("\\", "\\\\").replace('"', '\\"')
        return f'"{text}"'
    if isinstance(value, float):
        return figure(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return str(value)


def _field(cls: type, name: str) -> dataclasses.Field[Any]:
    for item in dataclasses.fields(cls):
        if item.name == name:
            return item
    raise LookupError(f"{cls.__name__} has no field {name}")
