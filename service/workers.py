"""Several worker processes (SDLGM_WORKERS > 1): uvicorn's workers on one listening socket, each serving
`service.app:worker_app`, with their Prometheus metrics merged through a fresh directory.

The launcher makes the directory, sets PROMETHEUS_MULTIPROC_DIR to it before any worker starts (each
worker imports prometheus_client with it set, so its values go to files there: service.metrics) and
removes it when uvicorn returns. Workers speak HTTP/1.1 with `NoDelayHttpToolsProtocol` (uvicorn's httptools
parser, as a single process uses when httptools is installed, which the serve extra pins): uvicorn binds the
socket it shares with its workers without naming TCP as its protocol, so asyncio does not turn Nagle's
algorithm off on their connections, and an answer written in two parts would wait for the client's
delayed ACK (about 40 ms a request on Linux); the protocol turns it off on each connection.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
from asyncio import Transport

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.metrics import MULTIPROC_ENV
from service.settings import Settings

log = logging.getLogger("sdlgm.service")


class NoDelayHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with TCP_NODELAY on its connection."""

    def connection_made(self, transport: Transport) -> None:  # type: ignore[override]  # as uvicorn's own
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)


def serve_workers(settings: Settings) -> None:
    """Serve SDLGM_WORKERS worker processes until uvicorn stops them (SIGINT, SIGTERM)."""
    with tempfile.TemporaryDirectory(prefix="sdlgm-metrics-") as metrics_dir:
        os.environ[MULTIPROC_ENV] = metrics_dir
        log.info("%d worker processes, metrics merged in %s", settings.workers, metrics_dir)
        uvicorn.run("service.app:worker_app", factory=True, workers=settings.workers, host=settings.host,
                    port=settings.port, log_level=settings.log_level, http=NoDelayHttpToolsProtocol)
