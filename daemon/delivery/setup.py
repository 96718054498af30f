"""What a group's uploads need, made from the config: one token source per environment (shared
by its groups) and each group's `Delivery` (environment, token source, HTTP session)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import structlog

from daemon.base.errors import SecretError
from daemon.config.model import Config, Group
from daemon.delivery.deliver import Delivery, DeliveryMemory
from daemon.provider import upload as api
from daemon.provider.tokens import TokenSource, ignore_fetch, read_secret
from daemon.spool.store import Spool

log = structlog.get_logger()


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
    )
