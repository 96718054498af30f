"""What a group's uploads need: its `Delivery` (environment, spool, token source, HTTP
session, clock, and what this process remembers of its batches), made from the config, with
one token source per environment shared by its groups."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import requests
import structlog

from daemon.base.errors import SecretError
from daemon.config.load import DEFAULT_CONFIG_PATH
from daemon.config.model import Config, Environment, Group
from daemon.provider import upload as api
from daemon.provider.tokens import TokenSource, ignore_fetch, read_secret
from daemon.spool.manifest import PartAnswer
from daemon.spool.store import Spool

log = structlog.get_logger()


@dataclass(slots=True)
class DeliveryMemory:
    """What this process knows of its batches beyond the disk (kept across reloads)."""

    # Parts the server accepted but the disk has not recorded yet (it was full): the next
    # attempt records them instead of uploading them again. By batch, then part number.
    answered: dict[str, dict[int, PartAnswer]] = field(default_factory=dict)
    # Batches this process has posted: an `uploading` state it finds for one of these is
    # its own retry, not a restart after a crash.
    posted: set[str] = field(default_factory=set)
    # Deliveries in a row that ended in a bug of dropd's, by batch.
    internal_errors: dict[str, int] = field(default_factory=dict)

    def forget(self, batch_id: str) -> None:
        """The batch is recorded on disk: nothing more to remember of it."""
        self.answered.pop(batch_id, None)
        self.posted.discard(batch_id)
        self.internal_errors.pop(batch_id, None)


@dataclass(frozen=True, slots=True)
class Delivery:
    """What one group needs to deliver its batches."""

    group: Group
    env: Environment
    spool: Spool
    tokens: TokenSource | SecretError  # the error when the secret cannot be read
    session: requests.Session
    timeouts: tuple[float, float]
    give_up_after_seconds: float
    wall: Callable[[], datetime]
    memory: DeliveryMemory = field(default_factory=lambda: DeliveryMemory())
    # The config this dropd runs with, for the commands its records tell a person to run.
    config_path: Path = DEFAULT_CONFIG_PATH


def token_sources(
    config: Config, on_fetch: Callable[[str, str], None] = ignore_fetch
) -> dict[str, TokenSource | SecretError]:
    """One token source per environment (shared by its groups), or why it has none."""
    daemon = config.daemon
    sources: dict[str, TokenSource | SecretError] = {}
    for name, env in config.environments.items():
        try:
            sources[name] = TokenSource(
                env,
                read_secret(env),
                daemon.state_dir,
                (daemon.connect_timeout_seconds, daemon.read_timeout_seconds),
                on_fetch=on_fetch,
            )
        except SecretError as exc:
            log.error("secret_unavailable", environment=name, reason=exc.reason)
            sources[name] = exc
    return sources


def build_delivery(
    config: Config,
    group: Group,
    spool: Spool,
    tokens: TokenSource | SecretError,
    wall: Callable[[], datetime],
    memory: DeliveryMemory | None = None,
) -> Delivery:
    """What a group's uploads need: its environment, token source and an HTTP session."""
    env = config.environments[group.environment]
    daemon = config.daemon
    return Delivery(
        group,
        env,
        spool,
        tokens,
        api.new_session(env.ca_bundle),
        (daemon.connect_timeout_seconds, daemon.read_timeout_seconds),
        daemon.give_up_after_seconds,
        wall,
        memory or DeliveryMemory(),
        config.path,
    )
