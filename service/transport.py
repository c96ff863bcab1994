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
Answers written here (the 408 and the 503) are raw HTTP/1.1 in the service's error shape. After them, and
after an app's answer that closes the connection while its client is still sending the request's body (a
shed request's 503 of a large body, a 413, a 408), the close lingers (RFC 9112 section 9.6): the answer is
written and the connection half-closed (FIN after the answer), and the connection's protocol becomes
`KernelDiscard`, which drops what still comes in the kernel (recv with MSG_TRUNC: no copy, no parsing;
over TLS `Discard`, a protocol that counts and drops it), until the client closes, LINGER_S pass or
LINGER_FACTOR times SDLGM_MAX_BODY_BYTES came. A close
with unread data would send a reset, and a client that sends its whole body before it reads (urllib,
requests, benchmarks/overload.py) would lose the answer already sent. (Reading the rest of such bodies
through h11 and the ASGI app instead made the event loop the bottleneck under benchmarks/overload.py's
256 clients: /healthz's median went from tens of milliseconds to hundreds.)

`ServiceServer` is uvicorn's server whose SIGTERM and SIGINT are a normal stop: it exits 0 after the drain
(uvicorn re-raises the signal once stopped, which would end the process with status 143).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal
import socket
import threading
from collections.abc import Callable, Generator
from typing import Any
from urllib.parse import unquote

import h11
import uvicorn
from fastapi import FastAPI
from h11._connection import DEFAULT_MAX_INCOMPLETE_EVENT_SIZE
from uvicorn.protocols.http.h11_impl import STATUS_PHRASES, H11Protocol
from uvicorn.server import HANDLED_SIGNALS, ServerState

from service.admission import DOOR_STATE_KEY, Answer, Door
from service.drain import ANSWER_MARGIN_S, DRAIN_STATE_KEY, Drain
from service.settings import Settings

DRAIN_IDLE_S = 1.0
LINGER_S = 2.0
LINGER_FACTOR = 4  # a lingering close reads at most this many times SDLGM_MAX_BODY_BYTES
RETRY_AFTER_S = 1
STARTUP_FAILURE = 3  # uvicorn's exit status when the app or the socket fails at start


class ServiceConfig(uvicorn.Config):
    """uvicorn's config with what ServiceProtocol needs (it is pickled to each worker process)."""

    def __init__(self, app: Any, *, header_timeout_s: float, max_connections: int, linger_bytes: int,
                 **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.header_timeout_s = header_timeout_s
        self.max_connections = max_connections
        self.linger_bytes = linger_bytes


def config_of(settings: Settings, app: FastAPI | str, **kwargs: Any) -> ServiceConfig:
    """The uvicorn config of the service: its address, TLS (when SDLGM_TLS_CERTFILE and SDLGM_TLS_KEYFILE are
    set), log level, protocol and time limits."""
    tls = {"ssl_certfile": str(settings.tls_certfile), "ssl_keyfile": str(settings.tls_keyfile)} \
        if settings.tls_certfile is not None else {}
    return ServiceConfig(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                         http=ServiceProtocol, header_timeout_s=settings.header_timeout_s, **tls,
                         max_connections=settings.max_connections,
                         linger_bytes=LINGER_FACTOR * settings.max_body_bytes,
                         timeout_keep_alive=math.ceil(settings.header_timeout_s),
                         timeout_graceful_shutdown=math.ceil(settings.drain_timeout_s), **kwargs)


def raw_error(status: int, reason: str, kind: str, message: str, headers: dict[str, str]) -> bytes:
    """A whole HTTP/1.1 answer in the service's error shape that closes its connection."""
    body = json.dumps({"error": message, "kind": kind}).encode()
    head = [f"HTTP/1.1 {status} {reason}", "content-type: application/json", f"content-length: {len(body)}",
            *(f"{k}: {v}" for k, v in headers.items()), "connection: close"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class Discard(asyncio.Protocol):
    """A closing connection's protocol: what the client still sends is counted and dropped, until it closes
    (then the connection closes), `linger_s` pass or more than `max_bytes` came (then it is closed as it is)."""

    def __init__(self, owner: ServiceProtocol, transport: asyncio.Transport, max_bytes: int, linger_s: float) -> None:
        self.owner, self.transport, self.left = owner, transport, max_bytes
        self.timer = owner.loop.call_later(linger_s, transport.close)

    def data_received(self, data: bytes) -> None:
        self.left -= len(data)
        if self.left < 0:
            self.transport.close()

    def eof_received(self) -> bool:
        return False  # the client is done: the transport closes

    def connection_lost(self, exc: Exception | None) -> None:
        self.timer.cancel()
        self.owner.connection_lost(exc)


_SINK = bytearray(1 << 20)  # what KernelDiscard's recv names: with MSG_TRUNC the kernel never writes to it


class KernelDiscard:
    """A lingering close's input discarded in the kernel: the transport stops reading, and a duplicate of its
    socket is read with MSG_TRUNC (TCP: the data is dropped, not copied out) whenever input comes, until the
    client closes (recv gives 0: the transport is then closed, with nothing unread, so no reset), `linger_s`
    pass or more than `max_bytes` came (then it is closed as it is). For plain TCP; TLS input has to be
    decrypted, which Discard does."""

    def __init__(self, owner: ServiceProtocol, transport: asyncio.Transport, fd: int, max_bytes: int,
                 linger_s: float) -> None:
        self.owner, self.transport, self.left, self.done = owner, transport, max_bytes, False
        self.sock = socket.socket(fileno=os.dup(fd))
        self.sock.setblocking(False)
        transport.pause_reading()
        owner.loop.add_reader(self.sock.fileno(), self._readable)
        self.timer = owner.loop.call_later(linger_s, self.close)

    def _readable(self) -> None:
        try:
            n = self.sock.recv_into(_SINK, 0, socket.MSG_TRUNC)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            n = 0  # reset by the client: nothing more to wait for
        self.left -= n
        if n == 0 or self.left < 0:
            self.close()

    def stop(self) -> None:
        """Stop discarding (once); the transport is left as it is."""
        if self.done:
            return
        self.done = True
        self.timer.cancel()
        self.owner.loop.remove_reader(self.sock.fileno())
        self.sock.close()

    def close(self) -> None:
        self.stop()
        self.transport.close()


class _Connection(h11.Connection):
    """h11's server connection, which shows each request's head to `screen` first: when it answers, the
    request is held back from uvicorn's protocol (PAUSED: it stops reading and makes no request cycle) and
    the answer kept in `answered`, for ServiceProtocol to write."""

    def __init__(self, screen: Callable[[h11.Request], Answer | None], **kwargs: Any) -> None:
        super().__init__(h11.SERVER, **kwargs)
        self.screen = screen
        self.answered: Answer | None = None

    def next_event(self) -> Any:
        if self.answered is not None:
            return h11.PAUSED
        event = super().next_event()
        if isinstance(event, h11.Request):
            self.answered = self.screen(event)
            if self.answered is not None:
                return h11.PAUSED
        return event


class _Transport:
    """The connection's transport as uvicorn's protocol and request cycles see it: the same, except that a
    close while the client may still be sending lingers (ServiceProtocol._linger), and that the connection
    counts as closing from then on."""

    def __init__(self, transport: asyncio.Transport, protocol: ServiceProtocol) -> None:
        self._transport, self._protocol = transport, protocol

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def close(self) -> None:
        self._protocol.close()

    def is_closing(self) -> bool:
        return self._protocol.lingering or self._transport.is_closing()

    def resume_reading(self) -> None:
        if not self._protocol.lingering:  # lingering, the input is the discarder's
            self._transport.resume_reading()


class ServiceProtocol(H11Protocol):
    """uvicorn's h11 protocol with TCP_NODELAY, the head timeout, the connection cap and the drain."""

    def __init__(self, config: uvicorn.Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        if not isinstance(config, ServiceConfig):
            raise TypeError("ServiceProtocol needs a ServiceConfig (service.transport.config_of)")
        self.header_timeout_s, self.max_connections = config.header_timeout_s, config.max_connections
        self.linger_bytes = config.linger_bytes
        limit = config.h11_max_incomplete_event_size
        self.head_limit = limit if limit is not None else DEFAULT_MAX_INCOMPLETE_EVENT_SIZE
        self.conn: _Connection = _Connection(self._screen, max_incomplete_event_size=self.head_limit)  # as
        # uvicorn's, with the door
        self._head_timer: asyncio.TimerHandle | None = None
        self.lingering = False
        self._raw: asyncio.Transport | None = None
        self._discard: KernelDiscard | None = None

    # --- the connection's life -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # as uvicorn's own
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._raw = transport
        super().connection_made(_Transport(transport, self))  # type: ignore[arg-type]  # a proxy of it
        if len(self.connections) > self.max_connections:
            self._answer_and_close(raw_error(
                503, "Service Unavailable", "overloaded", f"the service has its {self.max_connections} connections "
                f"open (SDLGM_MAX_CONNECTIONS); retry after {RETRY_AFTER_S} s", {"retry-after": str(RETRY_AFTER_S)}))
            return
        self._watch_head()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._door_answers()
        self._watch_head()

    # --- the door: answers from the request's head (service.admission.Door) ---------------------------

    def _screen(self, request: h11.Request) -> Answer | None:
        door: Door | None = self.app_state.get(DOOR_STATE_KEY)
        if door is None:
            return None
        raw_path, _, query = request.target.partition(b"?")
        try:
            path = self.root_path + unquote(raw_path.decode("ascii"))
        except UnicodeDecodeError:
            return None  # uvicorn answers it
        return door.answer(request.method.decode("ascii"), path, query, list(request.headers))

    def _door_answers(self) -> None:
        """Write the door's answer, if it gave one, in one write, then close (lingering when a body comes)."""
        answered = self.conn.answered
        if answered is None or self.lingering or self.transport.is_closing():
            return
        status, headers, body = answered
        head = [f"HTTP/1.1 {status} {STATUS_PHRASES[status].decode()}".encode()]
        head += [k + b": " + v for k, v in [*self.server_state.default_headers, *headers]]
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        self.server_state.total_requests += 1
        self.close()

    def close(self) -> None:
        """Close the connection: at once when the client sent nothing more than its requests, else (it may
        still be sending a body, or a head) lingering."""
        if self.lingering or self._raw is None:
            return
        if self._raw.is_closing():
            self._raw.close()
            return
        partial, _ = self.conn.trailing_data
        if self.conn.their_state in (h11.SEND_BODY, h11.ERROR) or (self.conn.their_state is h11.IDLE and partial):
            self._linger()
        else:
            self._raw.close()

    def _linger(self) -> None:
        """Half-close after what is written, then discard the input until the client closes (Discard)."""
        transport = self._raw
        assert transport is not None
        self._stop_head_timer()
        self.lingering = True
        # h11 keeps what it read past the request's head (up to one read of the body, 256 KB) until the
        # connection goes; a lingering connection parses nothing more, so it lets that go now (a request
        # cycle still running keeps its own reference to the connection it answers on)
        self.conn = _Connection(self._screen, max_incomplete_event_size=self.head_limit)
        if transport.can_write_eof():
            transport.write_eof()
        linger_s = LINGER_S
        drain: Drain | None = self.app_state.get(DRAIN_STATE_KEY)
        if drain is not None and drain.deadline is not None:  # stopping: no lingering past the drain
            linger_s = min(linger_s, max(0.0, drain.deadline + ANSWER_MARGIN_S - self.loop.time()))
        sock = transport.get_extra_info("socket")
        if sock is not None and transport.get_extra_info("sslcontext") is None:
            self._discard = KernelDiscard(self, transport, sock.fileno(), self.linger_bytes, linger_s)
        else:
            transport.set_protocol(Discard(self, transport, self.linger_bytes, linger_s))
            transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        if self._discard is not None:
            self._discard.stop()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()  # a request pipelined after this one is parsed now
        self._door_answers()
        self._watch_head()

    # --- the head timeout ------------------------------------------------------------------------------

    def _watch_head(self) -> None:
        """Time the head while the connection waits for one (h11's client state is IDLE), else not."""
        waiting = self.conn.their_state is h11.IDLE and not self.transport.is_closing()
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
        """Write the answer, then close lingering."""
        self.transport.write(answer)
        self._linger()

    # --- the drain ------------------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Called by uvicorn for each connection once it has stopped accepting (SIGTERM)."""
        drain: Drain | None = self.app_state.get(DRAIN_STATE_KEY)
        if drain is not None:
            drain.begin()
        if self.lingering:
            return  # closes by itself within LINGER_S
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
