"""The configuration reference, docs/reference/configuration.md, written from the settings'
own defaults and meanings; run as `python -m daemon.config.reference` it rewrites that page
and the example configs (`examples`) in the repository.
"""

from __future__ import annotations

import argparse
import enum
import functools
import sys
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path

from daemon.config.examples import EXAMPLES, render
from daemon.config.keys import REQUIRED, Key, Section, Setting, settings_of, toml_value
from daemon.config.model import SECTIONS

__all__ = ["COMMAND", "PAGE", "generated", "main", "page"]

PAGE = "docs/reference/configuration.md"
COMMAND = "python -m daemon.config.reference"

_INTRO = f"""\
# Configuration reference

<!-- Written by `{COMMAND}` from the settings in
daemon/config/model.py: change them there, not here. -->

dropd reads one TOML file, named by `--config F` (`-c F`) on each command.
`config/dropd.example.toml` is a commented example for the provider's three environments,
and `config/dropd.systemd.toml` one for the systemd install; both are written from the same
source as this page.

- **Secrets never sit in the TOML.** Each environment says where its client secret is read
  from: a file, an environment variable or a systemd credential. A `client_secret` key, or a
  user name or password in a URL, is an error.
- **Relative paths** are taken from the config file's folder; `~` is not expanded.
- **Every problem is reported at once**, one a line, as `key.path: why`, such as
  `groups.music.folder: "/srv/drop/music" does not exist; create it or fix the path`.
  Unknown keys are errors.
- **`dropd check-config --config F`** checks the file: exit 0 and `F: ok (…)` when it is
  valid, else exit 2 and every problem on stderr. It also checks that each group's folder,
  each `client_secret_file` and each `ca_bundle` exist. Secrets are read when dropd starts:
  a variable or a credential exists only inside the service.
- Every `*_seconds` key takes a whole or a fractional number (`10`, `0.5`).
- URLs are `https://`; plain `http://` is accepted only for a loopback host (the sandbox).
- A reload (SIGHUP: `systemctl reload dropd`) reads the file again; a config with problems
  is refused, and the running one stays. A good one is applied at once, every key whose
  `reload` column says `applied`; a changed key that says `restart` keeps its running value
  until dropd is restarted, and the reload names it (the `restart_needed` field of
  `config_reloaded`, and a `reload_needs_restart` warning).
"""


def page() -> str:
    """The text of the configuration reference."""
    return "\n".join([_INTRO, *(_section(section) for section in SECTIONS)])


def generated() -> dict[str, Callable[[], str]]:
    """Each file written from the code, by its path in the repository: how to write it."""
    files: dict[str, Callable[[], str]] = {PAGE: page}
    files.update({example.path: functools.partial(render, example) for example in EXAMPLES})
    return files


def main(argv: Sequence[str] | None = None) -> int:
    """Rewrite every generated file of the repository this package sits in, or with
    `--check` only say which differ from the code (exit 1)."""
    parser = argparse.ArgumentParser(
        prog="python -m daemon.config.reference",
        description="Write the configuration reference and the example configs from the code.",
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a file differs"
    )
    args = parser.parse_args(argv)
    root = Path(__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file():
        print(f"{root}: not dropd's repository; run this from a checkout", file=sys.stderr)
        return 2
    stale = []
    for path, write in generated().items():
        target = root / path
        text = write()
        if args.check:
            if not target.is_file() or target.read_text(encoding="utf-8") != text:
                stale.append(path)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    for path in stale:
        print(f"{path} differs from the code; run python -m daemon.config.reference")
    return 1 if stale else 0


def _section(section: Section) -> str:
    rows = [
        "| key | type | default | allowed values | meaning | reload |",
        "|---|---|---|---|---|---|",
    ]
    notes = []
    for setting in settings_of(section.settings):
        if setting.key.one_of:
            names = ", ".join(f"`{name}`" for name in setting.names)
            notes.append(f"**Exactly one of {names}.** {setting.key.meaning}")
            default = "required: exactly one of them"
            rows += [
                _row(str(member.value), alternative, alternative.type, default, number=False)
                for member, alternative in setting.key.one_of.items()
            ]
        else:
            kind, number = _type(setting)
            rows.append(_row(setting.name, setting.key, kind, _default(setting), number=number))
    text = [f"## `[{section.header}]`", "", section.about, "", *rows]
    for note in notes:
        text += ["", note]
    return "\n".join(text) + "\n"


def _row(name: str, key: Key, kind: str, default: str, *, number: bool) -> str:
    reload = "restart" if key.restart else "applied"
    cells = [f"`{name}`", kind, default, _allowed(key, number), _meaning(key), reload]
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _type(setting: Setting) -> tuple[str, bool]:
    """The type of a setting's value in words, and whether it is a number."""
    hint = setting.type
    if isinstance(hint, types.UnionType):  # Path | None: a key that may be left out
        hint = next(part for part in hint.__args__ if part is not type(None))
    if typing.get_origin(hint) is tuple:  # tuple[NotifyEvent, ...]: a list of choices
        return "list of choices", False
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return "choice", False
    kind = {float: "number", int: "whole number", str: "string", Path: "path"}[hint]
    number = hint in (float, int)
    return (f"{kind} ({setting.key.unit})" if setting.key.unit else kind), number


def _default(setting: Setting) -> str:
    if setting.key.default:
        return setting.key.default
    if setting.default is REQUIRED:
        return "required"
    return f"`{toml_value(setting.default)}`"


def _allowed(key: Key, number: bool) -> str:
    found = []
    if key.choices:
        found.append(", ".join(f"`{toml_value(member)}`" for member in key.choices))
    if number:
        found.append(key.bounds.describe().removeprefix("of "))
    if key.allowed:
        found.append(key.allowed)
    return "; ".join(found)


def _meaning(key: Key) -> str:
    choices = "; ".join(f"`{toml_value(member)}`: {what}" for member, what in key.choices.items())
    return f"{key.meaning} {choices}." if choices else key.meaning


if __name__ == "__main__":
    sys.exit(main())
