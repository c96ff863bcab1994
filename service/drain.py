"""The process's stop: from SIGTERM to exit, the service drains (docs/serving.md, "Graceful shutdown").

`Drain` is the one record of it, shared by the app (`/readyz` answers 503 once it has begun), the request
deadlines (service.deadline: every request in flight, and every request still arriving on an open
connection, must finish by the drain's deadline or be answered 503) and the HTTP connections
(service.transport: uvicorn calls each connection's `shutdown` when it stops accepting, which begins the
drain). The lifespan puts it in the ASGI lifespan state under DRAIN_STATE_KEY, which is how a connection
finds it. Used on the event loop only.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import anyio

DRAIN_STATE_KEY = "sdlgm_drain"
# Requests are answered this long before uvicorn's own limit (the same SDLGM_DRAIN_TIMEOUT_S) would cancel
# them without an answer.
ANSWER_MARGIN_S = 0.5


class Drain:
    """Whether the process is stopping, and the deadline its requests must meet (anyio's clock)."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.deadline: float | None = None
        self._scopes: set[anyio.CancelScope] = set()

    @property
    def draining(self) -> bool:
        return self.deadline is not None

    def begin(self) -> None:
        """Start draining (once): every request scope's deadline is pulled in to the drain's."""
        if self.deadline is not None:
            return
        self.deadline = anyio.current_time() + max(0.0, self.timeout_s - ANSWER_MARGIN_S)
        for scope in self._scopes:
            scope.deadline = self.bound(scope.deadline)

    def bound(self, deadline: float) -> float:
        """A request's deadline, no later than the drain's."""
        return deadline if self.deadline is None else min(deadline, self.deadline)

    def by_drain(self, deadline: float) -> bool:
        """Whether this deadline is the drain's (a request that missed it is answered 503 unavailable)."""
        return self.deadline is not None and deadline >= self.deadline

    def release(self, scope: anyio.CancelScope) -> None:
        """No longer pull this scope in (its request is answering)."""
        self._scopes.discard(scope)

    @contextmanager
    def scope(self, deadline: float) -> Iterator[anyio.CancelScope]:
        """A cancel scope with this deadline (bounded by the drain's), pulled in if a drain begins."""
        with anyio.CancelScope(deadline=self.bound(deadline)) as scope:
            self._scopes.add(scope)
            try:
                yield scope
            finally:
                self._scopes.discard(scope)
