"""The example configs in config/, written from the settings' own defaults and meanings.

`config/dropd.example.toml` explains each key where it first appears, with its default
value; `config/dropd.systemd.toml` shows what the systemd unit expects, with notes of its
own. `reference` writes both files; the tests hold the committed ones to what is here.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field

from daemon.config.keys import REQUIRED, Key, Section, Setting, settings_of, toml_value
from daemon.config.model import SECTIONS, DoneMarkers, NotifyEvent

__all__ = ["EXAMPLES", "Example", "Sample", "render"]

_WIDTH = 90  # of a comment line, "# " included
_CODE = re.compile(r"`[^`]*`")
_KEPT_SPACE = "\x00"


@dataclass(frozen=True, slots=True)
class Sample:
    """One table of an example config, such as [groups.music]."""

    header: str  # "daemon", "groups.music"
    values: Mapping[str, object] = field(default_factory=dict)  # keys set to values of its own
    # The keys written with their default: None for every key that has one.
    defaults: tuple[str, ...] | None = ()
    hidden: Mapping[str, object] = field(default_factory=dict)  # keys shown commented out
    notes: Mapping[str, str] = field(default_factory=dict)  # a comment of its own above a key
    # The whole table written as comments: an optional table shown, not set.
    commented: bool = False

    @property
    def section(self) -> Section:
        """The section of the TOML this table belongs to."""
        kind = self.header.split(".", 1)[0]
        return next(section for section in SECTIONS if section.kind == kind)

    def written_defaults(self) -> list[tuple[str, object]]:
        """The keys this table writes with their default value, and that value."""
        found = []
        for setting in settings_of(self.section.settings):
            name = setting.name
            if setting.key.one_of or name in self.values or name in self.hidden:
                continue
            if self.defaults is None:
                wanted = setting.default is not REQUIRED and setting.default is not None
            else:
                wanted = name in self.defaults
            if wanted:
                found.append((name, setting.default))
        return found


@dataclass(frozen=True, slots=True)
class Example:
    """An example config file."""

    path: str  # in the repository
    header: str  # the comment at the top, as lines
    samples: tuple[Sample, ...]
    explain: bool  # each key's meaning above it where it first appears
    intros: Mapping[str, str] = field(default_factory=dict)  # a section's: its own comment


def render(example: Example) -> str:
    """The text of `example`'s file."""
    lines = [_comment_line(line) for line in example.header.splitlines()]
    explained: set[str] = set()  # the keys whose meaning is written above
    introduced: set[str] = set()  # the sections whose comment is written above
    for sample in example.samples:
        section = sample.section
        if section.kind not in introduced:
            intro = _intro(example, section, explained)
            if intro:  # two blank lines between sections, one after the file's header
                lines += ["", "", *intro] if introduced else ["", *intro]
            introduced.add(section.kind)
        table = [f"[{sample.header}]", *_table(example, sample, explained)]
        if sample.commented:
            table = [line if line.startswith("#") else f"# {line}" for line in table]
        lines += ["", *table]
    return "\n".join(lines) + "\n"


def _intro(example: Example, section: Section, explained: set[str]) -> list[str]:
    """The comment before a section's first table."""
    lines = []
    if example.explain:
        lines += _wrap(section.about)
        for setting in settings_of(section.settings):
            if setting.key.one_of:
                lines += _wrap(
                    f"{setting.key.meaning} Each [{section.header}] takes exactly one of:"
                )
                for member, alternative in setting.key.one_of.items():
                    told = " ".join([alternative.meaning, *_allowed(alternative)])
                    lines += _wrap(f"{member.value}: {told}", indent="  ")
                    explained.add(str(member.value))
    own = example.intros.get(section.kind)
    if own is not None:
        lines += [_comment_line(line) for line in own.splitlines()]
    return lines


def _table(example: Example, sample: Sample, explained: set[str]) -> list[str]:
    """The keys of one table, each with its comment."""
    written = {**dict(sample.written_defaults()), **sample.values}
    lines = []
    for setting in settings_of(sample.section.settings):
        for name, key in _keys(setting):
            if name in written:
                line = f"{name} = {toml_value(written[name])}"
            elif name in sample.hidden:
                line = f"# {name} = {toml_value(sample.hidden[name])}"
            else:
                continue
            if example.explain and name not in explained:
                explained.add(name)
                lines += _explanation(key)
            if name in sample.notes:
                lines += _wrap(sample.notes[name])
            lines.append(line)
    return lines


def _keys(setting: Setting) -> list[tuple[str, Key]]:
    if setting.key.one_of:
        return [(str(member.value), key) for member, key in setting.key.one_of.items()]
    return [(setting.name, setting.key)]


def _explanation(key: Key) -> list[str]:
    lines = _wrap(" ".join([key.meaning, *_allowed(key)]))
    for member, meaning in key.choices.items():
        lines += _wrap(f"{toml_value(member)}: {meaning}.", indent="  ")
    if key.default:
        lines += _wrap(f"Default: {key.default}.")
    if key.restart:
        lines += _wrap("A reload does not change it: restart dropd.")
    return lines


def _allowed(key: Key) -> list[str]:
    """What a value must be, as a sentence; none for a choice, whose members are listed."""
    if not key.allowed:
        return []
    return [f"{key.allowed[0].upper()}{key.allowed[1:]}."]


def _wrap(text: str, indent: str = "") -> list[str]:
    # A command in backticks is kept on one line: its spaces are not places to break.
    kept = _CODE.sub(lambda code: code[0].replace(" ", _KEPT_SPACE), text)
    wrapped = textwrap.wrap(
        kept,
        width=_WIDTH,
        initial_indent=f"# {indent}",
        subsequent_indent=f"# {indent}  " if indent else "# ",
        break_long_words=False,
        break_on_hyphens=False,
    )
    return [line.replace(_KEPT_SPACE, " ") for line in wrapped]


def _comment_line(line: str) -> str:
    return f"# {line}".rstrip()


_TEST_TOKEN_URL = "https://apps-test.iu.edu/uaa-stg/oauth/token"
_PRODUCTION_TOKEN_URL = "https://apps.iu.edu/uaa-prd/oauth/token"
_PRODUCTION_BASE_URL = "https://lms-lti-3rdpartyprovisioning.apps.iu.edu"
_TEST_BASE_URL = "https://lms-lti-3rdpartyprovisioning-stg.apps-test.iu.edu"
_BETA_BASE_URL = "https://lms-lti-3rdpartyprovisioning-reg.apps-test.iu.edu"
_DTP_NOTE = "The legacy DTP job writes a .done file after each CSV: wait for it."

EXAMPLE = Example(
    path="config/dropd.example.toml",
    header="""\
dropd configuration: copy to /etc/dropd/dropd.toml and adapt.

Check it with:  dropd check-config --config /etc/dropd/dropd.toml
Every problem is reported at once, as `key.path: why`. Unknown keys are errors.
Relative paths are taken from the folder this file is in. Secrets never sit in this
file: each environment says where its client secret is read from. Every *_seconds key
takes a whole or fractional number, such as 10 or 0.5.
Each key is shown with its default value; docs/reference/configuration.md lists them all.
(Written by `python -m daemon.config.reference` from dropd's code, as that page is.)""",
    explain=True,
    samples=(
        Sample("daemon", defaults=None),
        Sample(
            "environments.production",
            values={
                "token_url": _PRODUCTION_TOKEN_URL,
                "base_url": _PRODUCTION_BASE_URL,
                "client_id": "my-unit",
                "client_secret_credential": "dropd-production",
            },
            defaults=None,
            hidden={"ca_bundle": "/etc/ssl/certs/campus.pem"},
        ),
        Sample(
            "environments.test",
            values={
                "token_url": _TEST_TOKEN_URL,
                "base_url": _TEST_BASE_URL,
                "client_id": "my-unit",
                "client_secret_file": "/etc/dropd/test.secret",
            },
            notes={"token_url": "beta and test share the test token server."},
        ),
        Sample(
            "environments.beta",
            values={
                "token_url": _TEST_TOKEN_URL,
                "base_url": _BETA_BASE_URL,
                "client_id": "my-unit",
                "client_secret_env": "DROPD_BETA_SECRET",
            },
        ),
        Sample(
            "groups.music",
            values={
                "environment": "production",
                "folder": "/srv/drop/music",
                "group_name": "music",
                "friendly_name": "Jacobs School of Music",
            },
            defaults=None,
        ),
        Sample(
            "groups.sis-nightly",
            values={
                "environment": "test",
                "folder": "/srv/drop/sis-nightly",
                "group_name": "sis-nightly",
                "friendly_name": "Registrar: nightly SIS export",
                "done_markers": DoneMarkers.REQUIRED,
                "max_upload_bytes": 1000000,
                "max_deleted_percent": 20,
                "min_rows_for_guard": 500,
            },
            defaults=("validation",),
            notes={"done_markers": _DTP_NOTE},
        ),
        Sample(
            "notify",
            values={
                "urls": [
                    "mailto://relay.example.edu?to=sis-team@example.edu&from=dropd@example.edu"
                ],
                "on": list(NotifyEvent),
            },
            hidden={"urls_file": "/etc/dropd/notify.urls", "urls_credential": "notify.urls"},
            commented=True,
        ),
    ),
)

SYSTEMD = Example(
    path="config/dropd.systemd.toml",
    header="""\
dropd configuration for the systemd install (systemd/dropd.service): copy to
/etc/dropd/dropd.toml (root:dropd, mode 0640) and adapt.

Check it with:  /opt/dropd/bin/dropd check-config --config /etc/dropd/dropd.toml
config/dropd.example.toml explains every key; this file shows what the unit
expects: state in /var/lib/dropd, secrets as systemd credentials, drop folders
under /srv/drop (made writable by the unit's folders drop-in).""",
    explain=False,
    intros={
        "environments": """\
Each secret is a credential: `client_secret_credential = "NAME"` here, and in a
drop-in of the unit (`systemctl edit dropd`):
  LoadCredential=NAME:/etc/dropd/credentials/NAME
dropd reads it from $CREDENTIALS_DIRECTORY/NAME, which exists only inside the
service: check-config does not look for it.""",
        "groups": """\
Each folder is under /srv/drop (the drop-in's ReadWritePaths=-/srv/drop), owned by
dropd, with the writers' group and setgid: see systemd/dropd.tmpfiles.""",
    },
    samples=(
        Sample(
            "daemon",
            defaults=(
                "state_dir",
                "settle_seconds",
                "quiet_seconds",
                "max_wait_seconds",
                "poll_seconds",
                "log_format",
                "metrics_port",
            ),
            notes={
                "state_dir": "The unit's StateDirectory=dropd: the only place outside the "
                "drop folders that the service may write.",
                "poll_seconds": "0: inotify. Set it (for example 15) for a drop folder on an "
                "NFS or SMB share.",
                "log_format": "One JSON object a line: journald keeps it, "
                "`journalctl -u dropd -o cat | jq` reads it.",
            },
        ),
        Sample(
            "environments.test",
            values={
                "token_url": _TEST_TOKEN_URL,
                "base_url": _TEST_BASE_URL,
                "client_id": "my-unit",
                "client_secret_credential": "test.secret",
            },
        ),
        Sample(
            "environments.production",
            values={
                "token_url": _PRODUCTION_TOKEN_URL,
                "base_url": _PRODUCTION_BASE_URL,
                "client_id": "my-unit",
                "client_secret_credential": "production.secret",
            },
        ),
        Sample(
            "groups.music",
            values={
                "environment": "production",
                "folder": "/srv/drop/music",
                "friendly_name": "Jacobs School of Music",
            },
        ),
        Sample(
            "groups.sis-nightly",
            values={
                "environment": "test",
                "folder": "/srv/drop/sis-nightly",
                "friendly_name": "Registrar: nightly SIS export",
                "done_markers": DoneMarkers.REQUIRED,
            },
            notes={"done_markers": _DTP_NOTE},
        ),
    ),
)

EXAMPLES = (EXAMPLE, SYSTEMD)
