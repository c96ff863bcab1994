"""The probe port (service/probe.py): GET /healthz answered by a thread of its own, 200 while the event loop
turns and 503 once it has not for SDLGM_PROBE_STALL_S; 404 elsewhere; on a real server beside the main
port, and answered while the event loop is busy with 1,024-vector batches."""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
import overload
import pytest
from conftest import Server, free_port

from service.probe import ProbePort

Serve = Callable[..., AbstractContextManager[Server]]


def get(port: int, path: str) -> tuple[int, dict[str, Any]]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, json.loads(r.read())
    finally:
        c.close()


def test_the_probe_answers_from_its_thread_and_says_when_the_loop_stalls() -> None:
    probe = ProbePort("127.0.0.1", 0, stall_s=1.0)  # its server runs without the loop's heartbeat here
    thread = threading.Thread(target=probe.server.serve_forever, daemon=True)
    thread.start()
    try:
        probe.heartbeat.last = time.monotonic()
        status, body = get(probe.port, "/healthz")
        assert status == 200 and body["status"] == "ok" and body["loop_lag_ms"] < 1000
        probe.heartbeat.last = time.monotonic() - 3.0  # the loop has not turned for 3 s
        status, body = get(probe.port, "/healthz")
        assert status == 503 and body["status"] == "stalled" and body["loop_lag_ms"] >= 3000
        status, body = get(probe.port, "/readyz")
        assert status == 404 and body["kind"] == "not_found"
    finally:
        probe.server.shutdown()
        probe.server.server_close()


def test_the_heartbeat_follows_the_running_loop() -> None:
    probe = ProbePort("127.0.0.1", 0, stall_s=1.0)

    async def run() -> tuple[float, float]:
        async with probe.serving():
            await asyncio.sleep(0.3)
            turning = probe.heartbeat.lag_s()
            time.sleep(0.5)  # the loop blocked: no beat
            return turning, probe.heartbeat.lag_s()

    turning, blocked = asyncio.run(run())
    assert turning < 0.25 and blocked >= 0.45


@pytest.fixture(scope="module")
def probed(models_dir: Path, serve: Serve) -> Iterator[tuple[Server, int]]:
    port = free_port()
    env = {"SDLGM_MODELS_DIR": str(models_dir), "SDLGM_PROVIDER": "cpu", "SDLGM_INTRA_OP_THREADS": "2",
           "SDLGM_LOG_LEVEL": "warning", "SDLGM_PROBE_PORT": str(port)}  # the default limits: 1024-vector batches
    with serve(env) as s:
        yield s, port


def test_a_real_server_answers_healthz_on_its_probe_port(probed: tuple[Server, int]) -> None:
    server, port = probed
    status, body = get(port, "/healthz")
    with server.client() as c:
        main = c.get("/healthz").json()
    assert status == 200 and body["status"] == "ok" and body["pid"] == main["pid"] == server.process.pid


def test_the_probe_port_answers_while_the_loop_sheds_large_batches(probed: tuple[Server, int]) -> None:
    server, port = probed
    x = np.random.default_rng(0).normal(size=(1024, 80)).astype(np.float32)
    figures = overload.run_load("127.0.0.1", server.port, server.process.pid, 32,
                                json.dumps({"vectors": x.tolist()}).encode(), 4.0, probe_port=port)
    side = figures["healthz_probe_port"]
    assert side["failed"] == 0 and side["probes"] > 10, figures
    assert set(figures["statuses"]) == {"200", "503"}, figures
