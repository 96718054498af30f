"""The stand-in provider's state, which every request reads or changes: its clients' tokens,
the scripted answers waiting, the kept uploads and the visitors of `/_sandbox/elsewhere`.

`daemon.sandbox.server` builds it; `daemon.sandbox.http` serves requests from it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from daemon.sandbox.script import ScriptedAnswers
from daemon.sandbox.store import UploadStore
from daemon.sandbox.tokens import TokenIssuer

__all__ = ["HitCounter", "Provider"]


class HitCounter:
    """How many requests a route has had, counted across the server's threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hits = 0

    def hit(self) -> None:
        """Count one request."""
        with self._lock:
            self._hits += 1

    @property
    def hits(self) -> int:
        """The requests counted so far."""
        with self._lock:
            return self._hits


@dataclass(frozen=True, slots=True)
class Provider:
    """The parts of the provider's API: `tokens` (the clients and the tokens issued to them),
    `answers` (the scripted answers waiting), `uploads` (the kept uploads), `elsewhere` (the
    requests to `/_sandbox/elsewhere`, where redirects may point), the clock, the groups
    its clients may upload to (None: every group), and the largest request body an upload
    may have (None: no limit)."""

    tokens: TokenIssuer
    answers: ScriptedAnswers
    uploads: UploadStore
    elsewhere: HitCounter
    clock: Callable[[], float]
    allowed_groups: frozenset[str] | None = None
    max_upload_bytes: int | None = None
