"""The HTTP/1.1 connections (docs/serving.md): uvicorn's h11 protocol with the service's rules for
slow clients, a connection cap and the drain, and the uvicorn server and config that run the app with it
(in this process: `serve`; in SDLGM_WORKERS processes: service.workers).

`ServiceProtocol`, for each connection:
- TCP_NODELAY: an answer written in two parts must not wait for the client's delayed ACK (about 40 ms a
  request on Linux); asyncio turns Nagle's algorithm off only on sockets it made itself for TCP, not on
  the shared socket of uvicorn's workers.
- the head timeout (SDLGM_HEADER_TIMEOUT_S): from its opening, and from the end of each answer, a
  connection has that long to deliver a whole request head; past it an idle connection is closed, and one
  that sent part of a head (a slow client, or one that stalls) is answered 408 and closed. The body's time
  is the request's (service.deadline).
- the cap (SDLGM_MAX_CONNECTIONS, per process): a connection over it is answered 503 with Retry-After at
  once and closed; it never reaches the app.
- the drain: when uvicorn stops accepting (SIGTERM) it asks every connection to shut down; the first
  begins the drain (service.drain: /readyz 503, deadlines pulled in). A connection with a request in flight
  closes after its answer (which carries `Connection: close`, service.deadline); an idle one stays open
  DRAIN_IDLE_S for a request a client may already have sent, serves it with `Connection: close`, and is
  closed after that or when nothing came.
Answers written here (the 408 and the 503) are raw HTTP/1.1 in the service's error shape; the connection is
then half-closed and its input discarded for up to LINGER_S before the close, so that a client still
sending reads the answer rather than a reset. An app's answer that closes the connection while the client
is still sending (a shed request's 503 of a large body) closes it at once, as uvicorn does: lingering there
too would make the event loop read every refused body (tried with benchmarks/overload.py's 256 clients:
/healthz's median went from tens of milliseconds to hundreds), against the rare client that sends its
whole body before reading and sees a broken pipe instead of its 503.

`ServiceServer` is uvicorn's server whose SIGTERM and SIGINT are a normal stop: it exits 0 after the drain
(uvicorn re-raises the signal once stopped, which would end the process with status 143).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import signal
import socket
import threading
from collections.abc import Generator
from typing import Any

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import HANDLED_SIGNALS, ServerState

from service.drain import DRAIN_STATE_KEY, Drain
from service.settings import Settings

DRAIN_IDLE_S = 1.0
LINGER_S = 2.0
RETRY_AFTER_S = 1
STARTUP_FAILURE = 3  # uvicorn's exit status when the app or the socket fails at start


class ServiceConfig(uvicorn.Config):
    """uvicorn's config with what ServiceProtocol needs (it is pickled to each worker process)."""

    def __init__(self, app: Any, *, header_timeout_s: float, max_connections: int, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.header_timeout_s = header_timeout_s
        self.max_connections = max_connections


def config_of(settings: Settings, app: FastAPI | str, **kwargs: Any) -> ServiceConfig:
    """The uvicorn config of the service: its address, TLS (when SDLGM_TLS_CERTFILE and SDLGM_TLS_KEYFILE are
    set), log level, protocol and time limits."""
    tls = {"ssl_certfile": str(settings.tls_certfile), "ssl_keyfile": str(settings.tls_keyfile)} \
        if settings.tls_certfile is not None else {}
    return ServiceConfig(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                         http=ServiceProtocol, header_timeout_s=settings.header_timeout_s, **tls,
                         max_connections=settings.max_connections,
                         timeout_keep_alive=math.ceil(settings.header_timeout_s),
                         timeout_graceful_shutdown=math.ceil(settings.drain_timeout_s), **kwargs)


def raw_error(status: int, reason: str, kind: str, message: str, headers: dict[str, str]) -> bytes:
    """A whole HTTP/1.1 answer in the service's error shape that closes its connection."""
    body = json.dumps({"error": message, "kind": kind}).encode()
    head = [f"HTTP/1.1 {status} {reason}", "content-type: application/json", f"content-length: {len(body)}",
            *(f"{k}: {v}" for k, v in headers.items()), "connection: close"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class ServiceProtocol(H11Protocol):
    """uvicorn's h11 protocol with TCP_NODELAY, the head timeout, the connection cap and the drain."""

    def __init__(self, config: uvicorn.Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        if not isinstance(config, ServiceConfig):
            raise TypeError("ServiceProtocol needs a ServiceConfig (service.transport.config_of)")
        self.header_timeout_s, self.max_connections = config.header_timeout_s, config.max_connections
        self._head_timer: asyncio.TimerHandle | None = None
        self._lingering = False

    # --- the connection's life -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # as uvicorn's own
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self._answer_and_close(raw_error(
                503, "Service Unavailable", "overloaded", f"the service has its {self.max_connections} connections "
                f"open (SDLGM_MAX_CONNECTIONS); retry after {RETRY_AFTER_S} s", {"retry-after": str(RETRY_AFTER_S)}))
            return
        self._watch_head()

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return  # the answer is written: what the client still sends is discarded
        super().data_received(data)
        self._watch_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch_head()

    # --- the head timeout ------------------------------------------------------------------------------

    def _watch_head(self) -> None:
        """Time the head while the connection waits for one (h11's client state is IDLE), else not."""
        waiting = self.conn.their_state is h11.IDLE and not self.transport.is_closing() and not self._lingering
        if waiting and self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timeout)
        elif not waiting:
            self._stop_head_timer()

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self.conn.their_state is not h11.IDLE or self.transport.is_closing():
            return
        partial, _ = self.conn.trailing_data
        if not partial:
            self.transport.close()  # idle: nothing to answer
            return
        self._answer_and_close(raw_error(
            408, "Request Timeout", "header_timeout", f"the request head did not arrive within "
            f"{self.header_timeout_s} s (SDLGM_HEADER_TIMEOUT_S); the connection is closed", {}))

    def _answer_and_close(self, answer: bytes) -> None:
        """Write the answer, half-close, discard the input for up to LINGER_S, then close."""
        self._stop_head_timer()
        self._lingering = True
        self.transport.write(answer)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_S, self.transport.close)

    # --- the drain ------------------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Called by uvicorn for each connection once it has stopped accepting (SIGTERM)."""
        drain: Drain | None = self.app_state.get(DRAIN_STATE_KEY)
        if drain is not None:
            drain.begin()
        if self.cycle is None or self.cycle.response_complete:
            self.loop.call_later(DRAIN_IDLE_S, self._close_when_idle)
        else:
            self.cycle.keep_alive = False

    def _close_when_idle(self) -> None:
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            super().shutdown()  # idle: closed now
        else:
            self.cycle.keep_alive = False  # a request came: closed after its answer


class ServiceServer(uvicorn.Server):
    """uvicorn's server, for which SIGTERM and SIGINT are the normal end: it returns after the drain."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in HANDLED_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def serve(settings: Settings, app: FastAPI) -> int:
    """Serve the app in this process until SIGTERM or SIGINT and its drain; the exit status."""
    server = ServiceServer(config_of(settings, app))
    server.run()
    return 0 if server.started else STARTUP_FAILURE
