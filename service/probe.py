"""The probe port (SDLGM_PROBE_PORT): `GET /healthz` answered by a thread of its own, so that a liveness
probe never waits behind the event loop's queue.

Under overload the event loop answers hundreds of connections in one turn (each shed request's 503 costs
it about a millisecond here), and a probe that arrives with them waits for the whole turn: /healthz on the
main port then takes hundreds of milliseconds although the service is fine (docs/reliability.md,
"Overload"). On the probe port, a `http.server` thread answers instead. It still says whether the event
loop turns: the loop stamps a heartbeat every HEARTBEAT_S, and the answer is 200 `{"status": "ok", "pid",
"loop_lag_ms"}` while the last stamp is younger than SDLGM_PROBE_STALL_S, else 503 `{"status": "stalled",
...}` (a loop wedged for that long is what a liveness probe should restart). Plain HTTP on SDLGM_HOST,
without tokens (like /healthz on the main port); each worker binds it with SO_REUSEPORT, so the kernel hands
each probe to one of them. Every other path answers 404. Readiness stays on the main port's /readyz.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger("sdlgm.service")

HEARTBEAT_S = 0.1
REQUEST_TIMEOUT_S = 5.0  # a probe connection that sends nothing is let go after this long


class Heartbeat:
    """When the event loop last turned (time.monotonic(), written by the loop, read by the probe thread)."""

    def __init__(self) -> None:
        self.last = time.monotonic()

    def lag_s(self) -> float:
        return max(0.0, time.monotonic() - self.last)

    async def beat(self) -> None:
        while True:
            self.last = time.monotonic()
            await asyncio.sleep(HEARTBEAT_S)


def _handler(heartbeat: Heartbeat, stall_s: float) -> type[BaseHTTPRequestHandler]:
    class ProbeHandler(BaseHTTPRequestHandler):
        timeout = REQUEST_TIMEOUT_S
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path.split("?", 1)[0] != "/healthz":
                self._answer(404, {"error": f"no {self.path.split('?', 1)[0]} on the probe port: it answers "
                                            "GET /healthz", "kind": "not_found"})
                return
            lag = heartbeat.lag_s()
            ok = lag < stall_s
            self._answer(200 if ok else 503, {"status": "ok" if ok else "stalled", "pid": os.getpid(),
                                              "loop_lag_ms": round(1000 * lag, 1)})

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.send_header("connection", "close")
            self.end_headers()
            self.wfile.write(data)
            self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's name)
            pass  # probes every few seconds would flood the log

    return ProbeHandler


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True
    allow_reuse_port = True  # one per worker on the same port
    daemon_threads = True


class ProbePort:
    """The probe port's server and its thread; `serving()` runs them and the heartbeat for a lifespan."""

    def __init__(self, host: str, port: int, stall_s: float) -> None:
        self.heartbeat = Heartbeat()
        self.server = _Server((host, port), _handler(self.heartbeat, stall_s))
        self.port = self.server.server_address[1]

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[None]:
        beat = asyncio.create_task(self.heartbeat.beat())
        thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.5},
                                  name="sdlgm-probe", daemon=True)
        thread.start()
        log.info("probe port %d: GET /healthz answered off the event loop", self.port)
        try:
            yield
        finally:
            beat.cancel()
            self.server.shutdown()
            self.server.server_close()
