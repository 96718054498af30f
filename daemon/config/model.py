"""dropd's settings as frozen dataclasses, one per table of the TOML, each key with its
default and what it means (see `keys`). Reading the TOML into them is `load`'s job."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from daemon.base.log import LogFormat, LogLevel
from daemon.config.keys import Key, Section, about
from daemon.config.toml import Bounds

__all__ = [
    "SECTIONS",
    "Config",
    "DaemonSettings",
    "DoneMarkers",
    "Environment",
    "Group",
    "NotifyEvent",
    "NotifySettings",
    "NotifyUrls",
    "SecretKind",
    "SecretSource",
    "TokenAuth",
    "UrlsKind",
    "Validation",
]


class DoneMarkers(enum.Enum):
    AUTO = "auto"
    REQUIRED = "required"
    OFF = "off"


class Validation(enum.Enum):
    STRICT = "strict"
    OFF = "off"


class TokenAuth(enum.Enum):
    """How the client id and secret reach the token endpoint."""

    BASIC = "basic"  # HTTP Basic header (the OAuth2 default)
    BODY = "body"  # client_id and client_secret in the form body


class SecretKind(enum.Enum):
    """Where a client secret is read from; each value is the key that names the source."""

    FILE = "client_secret_file"
    ENV = "client_secret_env"
    CREDENTIAL = "client_secret_credential"


@dataclass(frozen=True, slots=True)
class SecretSource:
    """Where an environment's client secret lives; never the secret itself."""

    kind: SecretKind
    value: str  # a path, an environment variable name, or a credential name


class NotifyEvent(enum.StrEnum):
    """What dropd tells people of through [notify]; each value is its log event's name."""

    BATCH_FAILED = "batch_failed"
    BATCH_HELD = "batch_held"
    GROUP_ERROR = "group_error"
    GROUP_RECOVERED = "group_recovered"


class UrlsKind(enum.Enum):
    """Where [notify]'s apprise URLs are read from; each value is the key that names it."""

    LIST = "urls"
    FILE = "urls_file"
    CREDENTIAL = "urls_credential"


@dataclass(frozen=True, slots=True)
class NotifyUrls:
    """Where the apprise URLs are: in the TOML itself, or in a file or credential (a URL may
    hold a password, so it may live where a client secret would)."""

    kind: UrlsKind
    urls: tuple[str, ...] = ()  # the URLs, when written in the TOML (kind LIST)
    value: str = ""  # a path or a credential name, for the other kinds


_ABOVE_ZERO = Bounds(above=True)
_URL = (
    "an https:// URL (plain http:// only to a loopback host, such as the sandbox) with no "
    "user, password, query or fragment"
)


@dataclass(frozen=True, slots=True)
class DaemonSettings:
    """The [daemon] table: what applies to every group."""

    state_dir: Path = field(
        default=Path("/var/lib/dropd"),
        metadata=about(
            "dropd's own state: the token cache (tokens/ENV.json, mode 0600), status.json and "
            "lock; dropd creates it with mode 0700. It stands apart from every drop folder: "
            "not a group's folder, not inside one, not holding one (checked as written and "
            "once links are followed). One dropd runs per state_dir: a second `dropd run` on "
            "it exits 2 at once.",
            restart=True,
        ),
    )
    settle_seconds: float = field(
        default=10.0,
        metadata=about(
            "A file is complete once its size and mtime have not changed for this long, or "
            "as soon as its .done marker exists (see done_markers). A file already there when "
            "dropd starts is watched this long too.",
            unit="seconds",
        ),
    )
    quiet_seconds: float = field(
        default=30.0,
        metadata=about(
            "A batch closes once no file has arrived for this long, or at max_wait_seconds, "
            "whichever comes first.",
            unit="seconds",
            bounds=_ABOVE_ZERO,
        ),
    )
    max_wait_seconds: float = field(
        default=300.0,
        metadata=about(
            "A batch closes this long after its first ready file, even while files keep "
            "arriving, or earlier at quiet_seconds, whichever comes first.",
            unit="seconds",
            bounds=_ABOVE_ZERO,
        ),
    )
    poll_seconds: float = field(
        default=0.0,
        metadata=about(
            "0: native file events (inotify). Above 0: look in the folders every N seconds "
            "instead; use it for NFS, SMB/CIFS or SSHFS shares, whose writes from other hosts "
            "raise no events.",
            unit="seconds",
        ),
    )
    log_format: LogFormat = field(
        default=LogFormat.JSON,
        metadata=about(
            "How dropd writes its log lines.",
            choices={
                LogFormat.JSON: "one JSON object a line, for journald",
                LogFormat.CONSOLE: "a line for people at a terminal",
            },
        ),
    )
    log_level: LogLevel = field(
        default=LogLevel.INFO,
        metadata=about(
            "The least severe log lines dropd writes; the levels of each event are in the "
            "log events reference.",
            choices={
                LogLevel.DEBUG: "every line, debugging details included",
                LogLevel.INFO: "what dropd does: files claimed, batches sent",
                LogLevel.WARNING: "only what went wrong or may need a look",
                LogLevel.ERROR: "only what needs a person",
            },
        ),
    )
    metrics_port: int = field(
        default=0,
        metadata=about(
            "Above 0: dropd serves Prometheus metrics at http://127.0.0.1:N/metrics (the "
            "loopback address only). 0: no metrics.",
            unit="TCP port",
            bounds=Bounds(high=65535),
        ),
    )
    retry_initial_seconds: float = field(
        default=5.0,
        metadata=about(
            "The first wait after a failed upload; it doubles, with jitter, at each new "
            "failure, up to retry_max_seconds. It may not be more than retry_max_seconds.",
            unit="seconds",
            bounds=_ABOVE_ZERO,
        ),
    )
    retry_max_seconds: float = field(
        default=900.0,
        metadata=about(
            "The longest wait between two attempts to upload a batch.",
            unit="seconds",
        ),
    )
    give_up_after_seconds: float = field(
        default=86400.0,
        metadata=about(
            "This long after its first attempt, a batch whose uploads keep failing fails: it "
            "goes to failed/ with error.json, and `dropd retry` puts it back in line.",
            unit="seconds",
        ),
    )
    connect_timeout_seconds: float = field(
        default=10.0,
        metadata=about(
            "How long to wait to connect to the token and upload servers.",
            unit="seconds",
            bounds=_ABOVE_ZERO,
        ),
    )
    read_timeout_seconds: float = field(
        default=300.0,
        metadata=about(
            "How long to wait for a server's answer; large uploads need it long.",
            unit="seconds",
            bounds=_ABOVE_ZERO,
        ),
    )
    sent_retention_days: int = field(
        default=0,
        metadata=about(
            "0: keep sent/ forever. N: the dated folders sent/YYYY-MM-DD/ older than N days "
            "are deleted (looked at hourly, each logged as sent_pruned).",
            unit="days",
        ),
    )


@dataclass(frozen=True, slots=True)
class Environment:
    """An [environments.NAME] table: one environment of the provider's API."""

    name: str  # the key under [environments]
    token_url: str = field(
        metadata=about(
            "The OAuth2 token endpoint. Test and beta: "
            "https://apps-test.iu.edu/uaa-stg/oauth/token; production: "
            "https://apps.iu.edu/uaa-prd/oauth/token.",
            allowed=_URL,
        )
    )
    base_url: str = field(  # without a trailing slash
        metadata=about(
            "The provider's API, which uploads go to as {base_url}/rest/upload/...; a trailing "
            "slash is dropped. Beta: https://lms-lti-3rdpartyprovisioning-reg.apps-test.iu.edu; "
            "test: https://lms-lti-3rdpartyprovisioning-stg.apps-test.iu.edu; production: "
            "https://lms-lti-3rdpartyprovisioning.apps.iu.edu.",
            allowed=_URL,
        )
    )
    client_id: str = field(metadata=about("The client id the provider gave your unit."))
    secret: SecretSource = field(
        metadata=about(
            "Where the client secret is read from; the secret itself never sits in the TOML, "
            "and a client_secret key is an error. Secrets are read when dropd starts, not by "
            "`dropd check-config`; one that cannot be read does not stop dropd: that "
            "environment's groups wait at step token.",
            one_of={
                SecretKind.FILE: Key(
                    "A file holding the secret, owned by dropd's user, mode 0600 (a file "
                    "others can read is a warning). `dropd check-config` checks that it exists.",
                    type="path",
                ),
                SecretKind.ENV: Key(
                    "An environment variable of the service holding the secret (for example "
                    "from an EnvironmentFile=).",
                    allowed="an environment variable name: letters, digits and _, not "
                    "starting with a digit",
                    type="string",
                ),
                SecretKind.CREDENTIAL: Key(
                    "A systemd credential, the safest choice: LoadCredential=NAME:PATH in the "
                    "unit (see systemd/dropd.service), read from $CREDENTIALS_DIRECTORY/NAME.",
                    allowed="the NAME of LoadCredential=NAME:PATH, without any /",
                    type="string",
                ),
            },
        )
    )
    ca_bundle: Path | None = field(
        default=None,
        metadata=about(
            "A CA bundle to trust as well as the system's (it adds to the trust, never "
            "replaces it): a PEM file, or a folder of hashed certificates; for a campus proxy "
            "that re-signs TLS. `dropd check-config` checks that it exists.",
            default="none: the system's CA certificates only",
        ),
    )
    token_auth: TokenAuth = field(
        default=TokenAuth.BASIC,
        metadata=about(
            "How the client id and secret reach the token endpoint.",
            choices={
                TokenAuth.BASIC: "in an HTTP Basic header (the OAuth2 default)",
                TokenAuth.BODY: "in the form body, for token servers that want them there",
            },
        ),
    )


@dataclass(frozen=True, slots=True)
class Group:
    """A [groups.KEY] table: one drop folder and where its files go."""

    key: str  # the key under [groups]
    environment: str = field(  # a key of Config.environments
        metadata=about(
            "Which [environments.NAME] this group uploads to.",
            allowed="the NAME of an [environments.NAME] table",
        )
    )
    folder: Path = field(  # absolute
        metadata=about(
            "The drop folder. Each group has its own: two groups never share one, nor sit one "
            "inside the other (checked as written and once links are followed). "
            "`dropd check-config` checks that it exists."
        )
    )
    group_name: str = field(
        metadata=about(
            "The API's group, as in POST {base_url}/rest/upload/{group_name}/zip.",
            allowed='letters, digits, ".", "_" and "-" (not "." or "..")',
            default="the table's key",
        )
    )
    friendly_name: str = field(
        metadata=about(
            "The name people see, in `dropd status`.",
            default="the table's key",
        )
    )
    done_markers: DoneMarkers = field(
        default=DoneMarkers.AUTO,
        metadata=about(
            "Whether a file waits for its marker, NAME.done or STEM.done. A marker counts only "
            "when it is at least as new as its file's last change: one left from an earlier "
            "drop says nothing of a file written in place after it (a `touch` of the marker "
            "will do). A marker goes with its file to sent/ or failed/ and is never uploaded.",
            choices={
                DoneMarkers.AUTO: "a file is taken at its marker if one comes, else once it "
                "settles (settle_seconds)",
                DoneMarkers.REQUIRED: "wait for a marker",
                DoneMarkers.OFF: "settle time only, markers are not waited for",
            },
        ),
    )
    validation: Validation = field(
        default=Validation.STRICT,
        metadata=about(
            "Whether dropd checks the files before it sends them.",
            choices={
                Validation.STRICT: "check the files as the server will, and fail a bad batch "
                "before sending it",
                Validation.OFF: "skip the checks of headers, rows and values: a batch fails at "
                "validate only where a file does not read in `encoding`, a CSV holds a NUL byte "
                "or message.properties an escape Java cannot read; the copies still go up in "
                "UTF-8 without a byte-order mark, and the guard (max_deleted_percent) still "
                "counts deleted rows",
            },
        ),
    )
    max_upload_bytes: int = field(
        default=0,
        metadata=about(
            "The largest ZIP to send, in bytes; 0: no limit. A larger batch goes up as several "
            "ZIPs, each at most this size, in the server's order (users with message.properties, "
            "courses, sections, enrollments, listings); one file is never cut, and one that "
            "cannot fit alone fails the batch at step zip. Where the server keeps its "
            "framework's defaults (1 MB a file, 10 MB a request), a ZIP over 1 MB is refused: "
            "set 1000000 there. How to tell, and what `dropd check` says: [the upload size "
            "limit](../operator/tokens-tls-proxies.md#the-upload-size-limit).",
            unit="bytes",
        ),
    )
    encoding: str = field(
        default="utf-8",
        metadata=about(
            "The encoding the group's CSVs are written in: each is read in it, and the copy "
            "that goes up in the ZIP is UTF-8. message.properties is read as UTF-8 where it "
            "reads so, else in this encoding, and goes up with non-ASCII characters as "
            "\\uXXXX escapes, which the server reads as written. "
            "The originals are kept as dropped, and the receipt says which files were "
            'converted. Excel on Windows saves "CSV (Comma delimited)" in "cp1252" and "CSV '
            'UTF-8" in "utf-8". A file that does not read in it fails at step validate, '
            "naming its line.",
            allowed='a text encoding Python knows, such as "utf-8", "cp1252", "latin-1" or '
            '"utf-16"',
        ),
    )
    max_deleted_percent: float = field(
        default=50.0,
        metadata=about(
            "The guard against a broken export: a batch in which one CSV has more than this "
            'share of its data rows with status "deleted" is held in held/, not sent, until '
            "`dropd release` sends it. 0 turns the guard off; fractions such as 12.5 are "
            "allowed.",
            unit="percent",
            bounds=Bounds(high=100),
        ),
    )
    min_rows_for_guard: int = field(
        default=100,
        metadata=about(
            "The guard looks only at a CSV with at least this many data rows.",
            unit="rows",
            bounds=Bounds(low=1),
        ),
    )


_URL_LINES = (
    "one apprise URL a line; blank lines and lines starting with # are left out; owned by "
    "dropd's user, mode 0600 (a file others can read is a warning)"
)


@dataclass(frozen=True, slots=True)
class NotifySettings:
    """The [notify] table: who is told of what, through apprise URLs."""

    urls: NotifyUrls = field(
        metadata=about(
            "Where the apprise URLs are: each event in `on` sends one message through every "
            "URL, naming the group, the batch, the step, the reason and the command to run "
            "next. A URL may hold a password: keep it out of the TOML with urls_file or "
            "urls_credential. No URL is ever logged; a URL apprise cannot use is an error "
            "naming its place (`notify.urls[0]`) and its scheme only. A message that cannot be "
            "sent is logged as alert_failed and never stops dropd.",
            one_of={
                UrlsKind.LIST: Key(
                    "The apprise URLs: mailto://, msteams://, slack://, ntfy://, json://, "
                    "and the other schemes of apprise's documentation. One with a password "
                    "(user:password@host) is an error here: secrets never sit in the TOML.",
                    allowed='a list of apprise URLs, such as ["mailto://relay.example.edu'
                    '?to=sis-team@example.edu&from=dropd@example.edu"]',
                    type="list of strings",
                ),
                UrlsKind.FILE: Key(
                    "A file holding the URLs. `dropd check-config` checks the URLs in it "
                    "when it can read it; dropd reads it when it starts and at each reload.",
                    allowed=_URL_LINES,
                    type="path",
                ),
                UrlsKind.CREDENTIAL: Key(
                    "A systemd credential holding the URLs, as a file would "
                    "(LoadCredential=NAME:PATH in the unit), read from "
                    "$CREDENTIALS_DIRECTORY/NAME when dropd starts and at each reload.",
                    allowed="the NAME of LoadCredential=NAME:PATH, without any /",
                    type="string",
                ),
            },
        )
    )
    on: tuple[NotifyEvent, ...] = field(
        default=tuple(NotifyEvent),
        metadata=about(
            "The events that send a message.",
            choices={
                NotifyEvent.BATCH_FAILED: "a batch went to failed/ (with `dropd retry` to "
                "run once its files are fixed)",
                NotifyEvent.BATCH_HELD: "the guard held a batch in held/ (with `dropd "
                "release` to send it as it is)",
                NotifyEvent.GROUP_ERROR: "a group shows Error and waits for a person (with "
                "`dropd verify`); told once when it starts or its step or reason changes, not "
                "at every look",
                NotifyEvent.GROUP_RECOVERED: "a group in Error is fine again",
            },
        ),
    )


@dataclass(frozen=True, slots=True)
class Config:
    path: Path
    daemon: DaemonSettings = field(default_factory=DaemonSettings)
    environments: Mapping[str, Environment] = field(default_factory=dict)
    groups: Mapping[str, Group] = field(default_factory=dict)
    notify: NotifySettings | None = None  # None: no [notify] table, nobody is told


SECTIONS = (
    Section(
        "daemon",
        DaemonSettings,
        "What applies to every group: where dropd keeps its state, when a file is ready and a "
        "batch closes, how uploads are retried, its log and metrics. The table and each of its "
        "keys may be left out.",
    ),
    Section(
        "environments.NAME",
        Environment,
        "One table per environment of the provider's API (such as test, beta and production); "
        "a group names the one it uses.",
    ),
    Section(
        "groups.NAME",
        Group,
        "One table per drop folder; NAME is the group's key, which logs, `dropd status` and the "
        "commands use. No group at all is valid: dropd then waits for a reload.",
    ),
    Section(
        "notify",
        NotifySettings,
        "Optional: tell people when something needs them, without Prometheus: by e-mail, "
        "Teams, Slack, ntfy, a healthchecks-style or a plain JSON webhook (any apprise URL). "
        "Sending never holds up the uploads; a reload applies a changed table.",
    ),
)
