"""Slow, half-open, too many and too large clients, overload and SIGTERM, against real `python -m service`
processes on loopback (docs/serving.md): a partial head gets 408 and an idle connection is closed at
the head timeout; a trickled or stalled body gets 408 and a close at the body timeout; 500 half-open POSTs
are all let go at the body timeout while the service answers; a connection over the cap gets 503 at once;
an over-limit body reaches a plain urllib client as the 413 (and `Expect: 100-continue` gets it before
sending); a client gone mid-body counts as 499; 32 clients of 1024-vector JSON batches get only 200s and
503s with /healthz fast, RSS bounded and the service healthy after; a body of too many JSON values is
refused unparsed; SIGTERM under keep-alive load turns /readyz to 503, loses no accepted request, closes
every connection with `Connection: close` and exits 0 within the drain, a stalled body included."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import overload
import pytest
from conftest import SESSION_ENV, Server
from test_service_metrics import scrape, value

Serve = Callable[..., AbstractContextManager[Server]]
V = [0.5] * 80
HEAD_S = BODY_S = 1.0


def connect(server: Server) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return s


def read_until_closed(s: socket.socket, timeout_s: float = 10.0) -> tuple[bytes, float]:
    """Everything the service sends until it closes the connection, and when that was (seconds from now)."""
    s.settimeout(timeout_s)
    started = time.monotonic()
    chunks = []
    try:
        while chunk := s.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks), time.monotonic() - started


def status_and_json(answer: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, json.loads(body)


def post_head(length: int, path: str = "/encode", extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n"
            f"{extra}\r\n").encode()


@pytest.fixture(scope="module")
def slow(models_dir: Path, serve: Serve) -> Iterator[Server]:
    env = {**SESSION_ENV, "SDLGM_MODELS_DIR": str(models_dir), "SDLGM_HEADER_TIMEOUT_S": str(HEAD_S),
           "SDLGM_BODY_TIMEOUT_S": str(BODY_S)}
    with serve(env) as s:
        yield s


def test_a_partial_head_gets_408_and_idle_connections_are_closed_at_the_head_timeout(slow: Server) -> None:
    started = time.monotonic()
    partial, idle, kept = connect(slow), connect(slow), connect(slow)
    partial.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")  # the head never ends
    kept.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
    first, took = read_until_closed(kept)  # the answer, then the keep-alive connection left idle is closed
    assert first.startswith(b"HTTP/1.1 200 OK") and HEAD_S - 0.2 < took < HEAD_S + 1.0
    answer, _ = read_until_closed(partial)
    assert read_until_closed(idle)[0] == b""  # a connection that never sent anything: closed, unanswered
    assert time.monotonic() - started < HEAD_S + 1.5  # both at the head timeout too
    status, headers, body = status_and_json(answer)
    assert (status, headers["connection"]) == (408, "close")
    assert body == {"kind": "header_timeout", "error": f"the request head did not arrive within {HEAD_S} s "
                    "(SDLGM_HEADER_TIMEOUT_S); the connection is closed"}


def test_a_trickled_or_stalled_body_gets_408_and_a_close_at_the_body_timeout(slow: Server) -> None:
    stalled = connect(slow)
    stalled.sendall(post_head(1000) + b'{"vector": [')
    trickled = connect(slow)
    trickled.sendall(post_head(1000))
    started = time.monotonic()
    trickled.settimeout(0.25)
    answer = b""
    while time.monotonic() - started < BODY_S + 2.0 and not answer:
        try:
            trickled.sendall(b"0.5,")  # 4 bytes every 0.25 s: never the whole body
            answer = trickled.recv(65536)
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            break
    took = time.monotonic() - started
    answer += read_until_closed(trickled)[0]  # the head and the body of the answer may come apart
    for got in (answer, read_until_closed(stalled)[0]):
        status, headers, body = status_and_json(got)
        assert (status, headers["connection"], body["kind"]) == (408, "close", "body_timeout")
        assert body["error"] == (f"the request body did not arrive within {BODY_S} s (SDLGM_BODY_TIMEOUT_S); "
                                 "the connection is closed")
    assert BODY_S - 0.1 < took < BODY_S + 1.0


def test_500_half_open_posts_are_let_go_at_the_body_timeout_while_the_service_answers(slow: Server) -> None:
    with slow.client() as c:
        before = scrape(c)
    sockets = []
    try:
        for _ in range(500):
            s = connect(slow)
            s.sendall(post_head(100) + b'{"vector"')
            sockets.append(s)
        started = time.monotonic()
        assert httpx.get(f"{slow.url}/healthz", timeout=5).status_code == 200  # 501 open: under the cap of 512
        ends = [read_until_closed(s) for s in sockets]
        took = time.monotonic() - started
    finally:
        for s in sockets:
            s.close()
    assert all(answer.startswith(b"HTTP/1.1 408 ") for answer, _ in ends)
    assert took < BODY_S + 3.0  # all of them let go at their timeout, none held
    with slow.client() as c:
        after = scrape(c)
    labels = {"endpoint": "/encode", "model": "", "version": "", "status": "408"}
    assert value(after, "sdlgm_requests_total", **labels) - value(before, "sdlgm_requests_total", **labels) == 500
    assert value(after, "sdlgm_in_flight_requests") == 1  # the scrape itself


def test_an_over_limit_body_reaches_a_plain_urllib_client_as_the_413(slow: Server) -> None:
    limit = int(SESSION_ENV["SDLGM_MAX_BODY_BYTES"])
    for path, size in [("/encode", 3 * limit), ("/v2/models/kpi5g-encode/infer", limit + 1)]:
        request = urllib.request.Request(slow.url + path, data=b" " * size, headers={"content-type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=10)
        assert info.value.code == 413
        assert json.loads(info.value.read()) == {"kind": "payload_too_large", "error": f"request body of {size} bytes "
                                                 f"is over the limit of {limit} bytes (SDLGM_MAX_BODY_BYTES)"}
    refused = urllib.request.Request(slow.url + "/encode", data=b"x" * (2 * limit), headers={"content-type": "text/csv"})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(refused, timeout=10)
    assert info.value.code == 415


def test_a_client_that_waits_for_100_continue_gets_the_413_before_it_sends(slow: Server) -> None:
    s = connect(slow)
    s.sendall(post_head(50_000_000, extra="expect: 100-continue\r\n"))
    status, headers, body = status_and_json(read_until_closed(s)[0])
    assert (status, body["kind"]) == (413, "payload_too_large")


def test_a_client_gone_mid_body_counts_as_499_not_500(slow: Server) -> None:
    with slow.client() as c:
        before = scrape(c)
        s = connect(slow)
        s.sendall(post_head(1000) + b'{"vector": [0.5')
        time.sleep(0.2)
        s.close()
        time.sleep(0.3)
        after = scrape(c)

    def delta(status: str) -> float:
        labels = {"endpoint": "/encode", "model": "", "version": "", "status": status}
        return value(after, "sdlgm_requests_total", **labels) - value(before, "sdlgm_requests_total", **labels)

    assert (delta("499"), delta("500")) == (1, 0)


def test_a_connection_over_the_cap_gets_503_at_once(models_dir: Path, serve: Serve) -> None:
    with serve({**SESSION_ENV, "SDLGM_MODELS_DIR": str(models_dir), "SDLGM_MAX_CONNECTIONS": "4"}) as srv:
        with ExitStack() as stack:
            held = [stack.enter_context(connect(srv)) for _ in range(4)]
            time.sleep(0.2)
            extra = connect(srv)
            extra.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            answer, took = read_until_closed(extra)
            assert len(held) == 4
        status, headers, body = status_and_json(answer)
        assert (status, headers["retry-after"], headers["connection"]) == (503, "1", "close")
        assert body == {"kind": "overloaded", "error": "the service has its 4 connections open "
                        "(SDLGM_MAX_CONNECTIONS); retry after 1 s"}
        assert took < 1.0
        time.sleep(0.2)
        assert httpx.get(f"{srv.url}/healthz", timeout=5).status_code == 200  # the four closed: room again


def test_a_shed_client_that_sends_its_whole_body_before_reading_gets_the_503_not_a_reset(models_dir: Path,
                                                                                         serve: Serve) -> None:
    """The 503 of a shed request closes its connection before the body is read; the close lingers
    (service.transport) so that a client that sends its whole body first, as urllib and requests do, reads
    the 503 rather than a reset. A small send buffer keeps the body from fitting in the sockets' buffers."""
    limit = int(SESSION_ENV["SDLGM_MAX_BODY_BYTES"])
    env = {**SESSION_ENV, "SDLGM_MODELS_DIR": str(models_dir),
           "SDLGM_QUEUE_MAX_VECTORS": SESSION_ENV["SDLGM_MAX_BATCH"]}
    with serve(env) as srv:
        holder = connect(srv)
        holder.sendall(post_head(limit))  # its body never comes: it holds the whole queue while it is read
        time.sleep(0.3)
        answers = []
        for _ in range(3):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 * 1024)
            s.settimeout(10)
            s.connect(("127.0.0.1", srv.port))
            s.sendall(post_head(limit) + b" " * limit)  # all of it before reading anything
            answers.append(read_until_closed(s)[0])
            s.close()
        holder.close()
        for answer in answers:
            status, headers, body = status_and_json(answer)
            assert (status, headers["retry-after"], headers["connection"], body["kind"]) == \
                (503, "1", "close", "overloaded")
        with srv.client() as c:
            assert c.get("/healthz").status_code == 200
            samples = scrape(c)
        version = dict(next(labels for (name, labels) in samples if name == "sdlgm_shed_requests_total"))["version"]
        # counted as the middlewares count a shed request, though the connection answered it from the head
        assert value(samples, "sdlgm_shed_requests_total", model="kpi5g", version=version) == 3
        assert value(samples, "sdlgm_requests_total", endpoint="/encode", model="kpi5g", version=version,
                     status="503") == 3
        assert value(samples, "sdlgm_errors_total", kind="overloaded") == 3


def test_with_a_token_file_a_full_queue_still_answers_401_before_503(models_dir: Path, serve: Serve,
                                                                     tmp_path: Path) -> None:
    """The connection's early 503 (service.admission.Door) is off when tokens are required: a request
    without a token gets its 401 from the access control, as it would with room in the queue."""
    limit = int(SESSION_ENV["SDLGM_MAX_BODY_BYTES"])
    tokens = tmp_path / "tokens"
    tokens.write_text("a-token-of-sixteen-chars-or-more\n")
    env = {**SESSION_ENV, "SDLGM_MODELS_DIR": str(models_dir), "SDLGM_TOKEN_FILE": str(tokens),
           "SDLGM_QUEUE_MAX_VECTORS": SESSION_ENV["SDLGM_MAX_BATCH"]}
    with serve(env) as srv:
        holder = connect(srv)
        holder.sendall(post_head(limit, extra="authorization: Bearer a-token-of-sixteen-chars-or-more\r\n"))
        time.sleep(0.3)
        answers = {}
        for name, extra in [("none", ""), ("token", "authorization: Bearer a-token-of-sixteen-chars-or-more\r\n")]:
            s = connect(srv)
            s.sendall(post_head(limit, extra=extra) + b" " * limit)
            answers[name] = status_and_json(read_until_closed(s)[0])
            s.close()
        holder.close()
    assert (answers["none"][0], answers["none"][2]["kind"]) == (401, "unauthorized")
    assert (answers["token"][0], answers["token"][2]["kind"]) == (503, "overloaded")


# --- overload and large bodies -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big(models_dir: Path, serve: Serve) -> Iterator[Server]:
    """The default limits (batches of 1024, 8 MB bodies, a queue of 4096 vectors) on the 2-thread sessions."""
    env = {"SDLGM_MODELS_DIR": str(models_dir), "SDLGM_PROVIDER": "cpu", "SDLGM_INTRA_OP_THREADS": "2",
           "SDLGM_LOG_LEVEL": "warning"}
    with serve(env) as s:
        yield s


RSS_BOUND_MB = 400


def healthz_s(server: Server) -> float:
    """The time of one GET /healthz on a fresh connection (a liveness probe's), raw: no client's overhead."""
    started = time.perf_counter()
    with connect(server) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        answer, _ = read_until_closed(s)
    assert answer.startswith(b"HTTP/1.1 200 ")
    return time.perf_counter() - started


def test_32_clients_of_1024_vector_json_batches_get_200s_and_503s_and_healthz_stays_fast(big: Server) -> None:
    x = np.random.default_rng(0).normal(size=(1024, 80)).astype(np.float32)
    figures = overload.run_load("127.0.0.1", big.port, big.process.pid, 32, json.dumps({"vectors": x.tolist()}).encode(),
                                5.0)  # 32 clients, where the queue takes 4 such requests
    assert set(figures["statuses"]) == {"200", "503"}, figures
    assert figures["transport_errors"] == {} and figures["healthz"]["failed"] == 0, figures
    # Bounds with room for a shared 2-core machine's scheduling (the stall was 12.8 s); the 100 ms
    # goal is measured by benchmarks/overload.py with 256 clients (docs/results/overload.json).
    assert figures["healthz"]["p50_ms"] < 250 and figures["healthz"]["max_ms"] < 2000, figures
    assert figures["rss_mb"]["peak_vmhwm"] < RSS_BOUND_MB, figures
    with big.client() as c:
        assert c.get("/healthz").status_code == 200
        assert c.post("/encode", json={"vector": V}).status_code == 200
        assert value(scrape(c), "sdlgm_queue_vectors", model="kpi5g") == 0


def test_a_body_of_more_json_values_than_any_batch_is_refused_unparsed(big: Server) -> None:
    zeros = b'{"vectors": [[' + b",".join([b"0"] * 4_000_000) + b"]]}"  # 8 MB of one huge row
    codes = json.dumps({"fingerprint": "0" * 64, "codes": [{"binary": "AQA="}] * 300_000}).encode()
    latencies: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            latencies.append(healthz_s(big))
            time.sleep(0.01)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        with big.client() as c:
            answers = [(c.post("/encode", content=zeros, headers={"content-type": "application/json"}),
                        c.post("/decode", content=codes, headers={"content-type": "application/json"}))
                       for _ in range(3)]
    finally:
        stop.set()
        prober.join()
    cap_encode, cap_decode = 2 * 1024 * 80 + 64, 2 * 1024 * (2 * 4 + 2) + 64  # two batches; D = 80, L0 = 4
    for enc, dec in answers:
        assert (enc.status_code, dec.status_code) == (400, 400)
        assert enc.json()["error"] == (f"request body holds more than {cap_encode} JSON values, more than the largest "
                                       "batch this model takes (SDLGM_MAX_BATCH); it was not parsed")
        assert dec.json()["error"].startswith(f"request body holds more than {cap_decode} JSON values")
    assert np.median(latencies) < 0.1 and max(latencies) < 1.0, latencies  # not stalled by a parse


def test_a_large_body_parsed_off_the_loop_gives_the_answer_and_the_errors_of_a_small_one(big: Server) -> None:
    x = np.random.default_rng(1).normal(size=(1024, 80)).astype(np.float32)
    with big.client() as c:
        as_json = c.post("/encode", json={"vectors": x.tolist()})
        as_binary = c.post("/encode", content=x.tobytes(), headers={"content-type": "application/octet-stream"})
        bad = x.tolist()
        bad[700][3] = float("nan")
        refused = c.post("/encode", content=json.dumps({"vectors": bad}), headers={"content-type": "application/json"})
    assert as_json.status_code == 200 and as_json.json()["codes"] == as_binary.json()["codes"]
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid request: body.vectors.700.3: Input should be a finite number"


# --- SIGTERM -------------------------------------------------------------------------------------------


DRAIN_S = 3.0


class KeepAlive(threading.Thread):
    """POST /encode back to back on keep-alive connections until the service refuses a new connection;
    counts the answers, the requests lost on an accepted connection, and how each connection ended."""

    def __init__(self, server: Server) -> None:
        super().__init__()
        self.server = server
        self.lost = 0
        self.statuses: dict[int, int] = {}
        self.last_close_header: list[str] = []

    def run(self) -> None:
        body = json.dumps({"vector": V})
        while True:
            c = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
            try:
                c.connect()
            except ConnectionRefusedError:
                return
            while True:
                try:
                    c.request("POST", "/encode", body=body, headers={"content-type": "application/json"})
                    r = c.getresponse()
                    r.read()
                except (http.client.HTTPException, OSError):
                    self.lost += 1  # sent on a connection the service had accepted, and never answered
                    break
                self.statuses[r.status] = self.statuses.get(r.status, 0) + 1
                if r.getheader("connection", "").lower() == "close":
                    self.last_close_header.append("close")
                    break
            c.close()


def test_sigterm_under_keep_alive_load_drains_without_losing_an_accepted_request(models_dir: Path,
                                                                                 serve: Serve) -> None:
    env = {**SESSION_ENV, "SDLGM_MODELS_DIR": str(models_dir), "SDLGM_DRAIN_TIMEOUT_S": str(DRAIN_S)}
    with serve(env) as srv:
        clients = [KeepAlive(srv) for _ in range(8)]
        for t in clients:
            t.start()
        readiness = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        readiness.request("GET", "/readyz")
        first = readiness.getresponse()
        assert (first.status, json.loads(first.read())["ready"]) == (200, True)
        time.sleep(1.0)
        srv.process.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        seen: list[tuple[int, str | None, float]] = []
        while time.monotonic() - sent < 2.0:
            try:
                readiness.request("GET", "/readyz")
                r = readiness.getresponse()
                r.read()
            except (http.client.HTTPException, OSError):
                break
            seen.append((r.status, r.getheader("connection"), time.monotonic() - sent))
            if r.status == 503:
                break
            time.sleep(0.02)
        code = srv.process.wait(timeout=DRAIN_S + 5)
        exited = time.monotonic() - sent
        for t in clients:
            t.join(timeout=10)
    assert code == 0, srv.log()
    assert exited < DRAIN_S + 1.5
    assert seen and seen[-1][:2] == (503, "close") and seen[-1][2] < 0.5, seen
    assert sum(t.lost for t in clients) == 0, [(t.lost, t.statuses) for t in clients]
    assert all(set(t.statuses) == {200} for t in clients)
    assert sum(sum(t.statuses.values()) for t in clients) > 8
    assert all(t.last_close_header for t in clients)  # every connection ended on an answer with Connection: close


def test_sigterm_with_a_stalled_body_exits_within_the_drain(models_dir: Path, serve: Serve) -> None:
    env = {**SESSION_ENV, "SDLGM_MODELS_DIR": str(models_dir), "SDLGM_DRAIN_TIMEOUT_S": "2",
           "SDLGM_BODY_TIMEOUT_S": "60", "SDLGM_REQUEST_TIMEOUT_S": "60"}
    with serve(env) as srv:
        stalled = connect(srv)
        stalled.sendall(post_head(1000) + b'{"vector": [')
        time.sleep(0.3)
        srv.process.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        answer, _ = read_until_closed(stalled)
        code = srv.process.wait(timeout=10)
        exited = time.monotonic() - sent
    status, headers, body = status_and_json(answer)
    assert (status, headers["connection"], body["kind"]) == (503, "close", "unavailable")
    assert code == 0 and exited < 2 + 1.5
