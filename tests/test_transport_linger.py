"""service.transport.ServiceProtocol on a fake transport, without a server: when the door answers a request
from its head while the body is still coming, the connection writes the answer, half-closes and lingers,
and lets go of the body bytes h11 had read past the head (with 256 clients of large shed bodies, that
buffer per lingering connection was most of the service's memory: docs/reliability.md, "Overload")."""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from fastapi import FastAPI
from uvicorn.server import ServerState

from service.admission import DOOR_STATE_KEY
from service.settings import Settings
from service.transport import Discard, ServiceProtocol, config_of


class FakeTransport(asyncio.Transport):
    """What the protocol writes, whether it half-closed, and which protocol reads it now."""

    def __init__(self) -> None:
        super().__init__()
        self.written, self.eof, self.closed, self.protocol = bytearray(), False, False, None  # type: Any

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default  # no socket: a lingering close takes the Discard protocol

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class Door:
    """Answers every POST 503 from its head, as service.admission.Door does for a shed large body."""

    def answer(self, method: str, path: str, query: bytes, headers: list[tuple[bytes, bytes]]) -> Any:
        return (503, [(b"connection", b"close"), (b"content-length", b"2")], b"{}") if method == "POST" else None


def test_a_door_answer_while_the_body_comes_lingers_and_lets_go_of_the_read_body() -> None:
    loop = asyncio.new_event_loop()
    try:
        config = config_of(Settings(), FastAPI())
        state = ServerState()
        protocol = ServiceProtocol(config, state, {DOOR_STATE_KEY: Door()}, _loop=loop)
        transport = FakeTransport()
        protocol.connection_made(transport)
        body_read = b"7" * 200_000  # what one read brought past the head, of a 2 MB body
        protocol.data_received(b"POST /encode HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                               b"content-length: 2000000\r\n\r\n" + body_read)
        assert bytes(transport.written).startswith(b"HTTP/1.1 503 ")
        assert transport.eof and not transport.closed  # half-closed, lingering: the client reads its 503
        assert protocol.lingering and isinstance(transport.protocol, Discard)
        assert protocol.conn.trailing_data == (b"", False)  # the 200 KB read past the head is let go
        assert protocol.conn.their_state is h11.IDLE
        assert protocol in state.connections
        transport.protocol.connection_lost(None)  # the client closed: the connection is gone from the server's
        assert protocol not in state.connections
    finally:
        loop.close()
