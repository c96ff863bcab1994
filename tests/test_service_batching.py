"""Dynamic batching, load shedding and worker processes, against real `python -m service` processes on
loopback: concurrent native JSON, native binary and V2 requests share onnxruntime runs (counted by
sdlgm_inference_seconds) and each gets the answer its rows get alone in onnxruntime here, bit for bit; a
lone request waits the batch delay and no longer; a bad request in a batch window gets its 400 at once
and the others are unaffected; a full queue answers 503 with Retry-After and the service stays healthy;
SDLGM_WORKERS=2 answers from two processes, as fast on a keep-alive connection as one, and /metrics
counts the requests of both."""

from __future__ import annotations

import asyncio
import base64
import re
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from conftest import SESSION_ENV, Server
from prometheus_client.parser import text_string_to_metric_families
from test_service_metrics import Samples, scrape, value

from bundle import formats
from bundle.runtime import ModelRuntime, open_bundle
from service import binary
from service.inference import codes_out
from service.v2models import padded

Serve = Callable[..., AbstractContextManager[Server]]
DELAY_S = 0.5  # the batch window of the batching server: wide, so that concurrent requests surely share it
OCT = {"content-type": "application/octet-stream"}
OCT_BOTH = {**OCT, "accept": "application/octet-stream"}


@pytest.fixture(scope="module")
def kpi(models_dir: Path) -> ModelRuntime:
    """The kpi5g bundle in onnxruntime here, with the servers' threads: each request's rows run alone."""
    return open_bundle(models_dir / "kpi5g", (2, 1))


@pytest.fixture(scope="module")
def batching(models_dir: Path, serve: Serve) -> Iterator[Server]:
    env = {**SESSION_ENV, "SDLGM_MODELS_DIR": str(models_dir), "SDLGM_BATCH_MAX_DELAY_MS": str(DELAY_S * 1000)}
    with serve(env) as s:
        yield s


def vectors(kpi: ModelRuntime, n: int, seed: int) -> np.ndarray:
    st = kpi.manifest.standardization
    assert st is not None
    rng = np.random.default_rng(seed)
    return (np.asarray(st.mean) + rng.normal(size=(n, kpi.manifest.D)) * np.asarray(st.std)).astype(np.float32)


def runs(server: Server, graph: str, model: str = "kpi5g") -> float:
    with server.client() as c:
        version = c.get(f"/v1/models/{model}").json()["version"]
        return value(scrape(c), "sdlgm_inference_seconds_count", model=model, version=version, graph=graph)


async def concurrently(server: Server, requests: list[dict[str, Any]]) -> list[tuple[httpx.Response, float]]:
    """Send the requests (httpx.AsyncClient.post keyword arguments) at once; each answer and its latency."""
    async with httpx.AsyncClient(base_url=server.url, timeout=30.0,
                                 limits=httpx.Limits(max_connections=len(requests))) as c:
        async def one(kwargs: dict[str, Any]) -> tuple[httpx.Response, float]:
            started = time.perf_counter()
            r = await c.post(**kwargs)
            return r, time.perf_counter() - started

        return list(await asyncio.gather(*[one(kw) for kw in requests]))


def v2_encode(x: np.ndarray) -> dict[str, Any]:
    return {"url": "/v2/models/kpi5g-encode/infer", "json": {"inputs": [
        {"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.reshape(-1).tolist()}]}}


def json_codes(kpi: ModelRuntime, x: np.ndarray, fmt: str = "v1") -> list[dict[str, Any]]:
    L_hat, counts = kpi.encode(x)
    m = kpi.manifest
    return [c.model_dump() for c in codes_out(L_hat, counts, m.code_space, fmt, m.entropy)]  # type: ignore[arg-type]


def framed_codes(kpi: ModelRuntime, x: np.ndarray) -> bytes:
    _, counts = kpi.encode(x)
    return binary.frame("v1", *formats.pack_stream("v1", counts, kpi.manifest.code_space, None))


def test_concurrent_encodes_of_every_protocol_share_runs_and_get_their_own_codes(batching: Server,
                                                                                  kpi: ModelRuntime) -> None:
    xs = [vectors(kpi, n, seed) for seed, n in enumerate([1, 1, 1, 1, 3, 5, 4, 4, 2, 2])]
    requests: list[dict[str, Any]] = [{"url": "/encode", "json": {"vector": x[0].tolist()}} for x in xs[:4]]
    requests += [{"url": "/encode", "json": {"vectors": xs[4].tolist()}},
                 {"url": "/encode", "json": {"vectors": xs[5].tolist(), "format": "enum"}},
                 {"url": "/encode", "content": xs[6].astype("<f4").tobytes(), "headers": OCT_BOTH},
                 {"url": "/encode", "content": xs[7].astype("<f4").tobytes(), "headers": OCT},
                 v2_encode(xs[8]), v2_encode(xs[9])]
    before = runs(batching, "encoder")
    answers = [r for r, _ in asyncio.run(concurrently(batching, requests))]
    coalesced = runs(batching, "encoder") - before
    assert [r.status_code for r in answers] == [200] * len(requests), [r.text for r in answers]
    assert 1 <= coalesced <= len(requests) // 2  # 10 requests, all in one batch window
    for r, x in zip(answers[:4], xs[:4], strict=True):
        assert r.json()["codes"] == json_codes(kpi, x)
    assert answers[4].json()["codes"] == json_codes(kpi, xs[4])
    assert answers[5].json()["codes"] == json_codes(kpi, xs[5], "enum")
    assert answers[6].content == framed_codes(kpi, xs[6])
    assert answers[7].json()["codes"] == json_codes(kpi, xs[7])
    for r, x in zip(answers[8:], xs[8:], strict=True):
        out = {o["name"]: o["data"] for o in r.json()["outputs"]}
        L_hat, counts = kpi.encode(x)
        indices, values = padded(counts, kpi.manifest.L0)
        assert (out["indices"], out["counts"], out["L_hat"]) == (
            indices.reshape(-1).tolist(), values.reshape(-1).tolist(), L_hat.tolist())
        assert out["code"] == [base64.b64encode(b).decode() for b in formats.pack("v1", counts, kpi.manifest.code_space,
                                                                                 None)]


def test_concurrent_decodes_share_runs_and_get_the_reconstructions_of_their_codes(batching: Server,
                                                                                   kpi: ModelRuntime) -> None:
    m = kpi.manifest
    xs = [vectors(kpi, n, 20 + seed) for seed, n in enumerate([1, 2, 3, 1, 4])]
    counts = [kpi.encode(x)[1] for x in xs]
    blobs = [formats.pack("v1", c, m.code_space, None) for c in counts]
    requests: list[dict[str, Any]] = [
        {"url": "/decode", "json": {"fingerprint": m.fingerprint,
                                    "codes": [{"binary": base64.b64encode(b).decode()} for b in bs]}}
        for bs in blobs[:3]]
    requests += [{"url": "/decode", "content": binary.frame("v1", *formats.pack_stream("v1", counts[3], m.code_space,
                                                                                       None)),
                  "headers": {**OCT_BOTH, binary.FINGERPRINT_HEADER: m.fingerprint}},
                 {"url": "/v2/models/kpi5g-decode/infer", "json": {"inputs": [
                     {"name": "code", "shape": [len(blobs[4])], "datatype": "BYTES",
                      "data": [base64.b64encode(b).decode() for b in blobs[4]]}]}}]
    before = runs(batching, "decoder")
    answers = [r for r, _ in asyncio.run(concurrently(batching, requests))]
    coalesced = runs(batching, "decoder") - before
    assert [r.status_code for r in answers] == [200] * len(requests), [r.text for r in answers]
    assert 1 <= coalesced <= 2
    want = [kpi.decode(c.astype(np.float32)) for c in counts]
    for r, w in zip(answers[:3], want[:3], strict=True):
        assert r.json()["reconstructions"] == w.tolist()  # float32 values through JSON: bit for bit
    assert answers[3].content == want[3].astype("<f4").tobytes()
    assert answers[4].json()["outputs"][0]["data"] == want[4].reshape(-1).tolist()


def test_concurrent_predictions_share_runs_and_get_their_own_probabilities(batching: Server,
                                                                          models_dir: Path) -> None:
    emotions = open_bundle(models_dir / "emotions", (2, 1))
    m = emotions.manifest
    assert m.labels is not None
    rng = np.random.default_rng(70)
    xs = [rng.random((n, m.D)).astype(np.float32) for n in (1, 3, 2)]
    before = runs(batching, "encoder", "emotions")
    answers = [r for r, _ in asyncio.run(concurrently(batching, [
        {"url": "/predict?model=emotions", "json": {"vectors": x.tolist()}} for x in xs]))]
    coalesced = runs(batching, "encoder", "emotions") - before
    assert [r.status_code for r in answers] == [200] * len(xs), [r.text for r in answers]
    assert 1 <= coalesced <= 2
    for r, x in zip(answers, xs, strict=True):
        probs, L_hat = emotions.predict(x)
        got = r.json()["predictions"]
        assert [p["probabilities"] for p in got] == [dict(zip(m.labels, row.tolist(), strict=True)) for row in probs]
        assert [p["L_hat"] for p in got] == L_hat.tolist()


def test_a_lone_request_is_answered_after_the_batch_delay_and_no_later(batching: Server, kpi: ModelRuntime) -> None:
    with batching.client() as c:
        c.get("/healthz")  # the connection is open before the clock starts
        started = time.perf_counter()
        r = c.post("/encode", json={"vector": vectors(kpi, 1, 9)[0].tolist()})
        took = time.perf_counter() - started
    assert r.status_code == 200
    assert DELAY_S <= took < DELAY_S + 1.0  # it waited for company, then ran alone


def test_bad_requests_in_a_batch_window_get_their_400_at_once_and_the_rest_are_served(batching: Server,
                                                                                       kpi: ModelRuntime) -> None:
    m = kpi.manifest
    xs = [vectors(kpi, n, 40 + seed) for seed, n in enumerate([1, 2, 1, 3])]
    good: list[dict[str, Any]] = [{"url": "/encode", "json": {"vectors": x.tolist()}} for x in xs]
    nan = xs[0].copy()
    nan[0, 5] = np.nan
    bad: list[dict[str, Any]] = [
        {"url": "/encode", "json": {"vector": xs[0][0, :79].tolist()}},
        {"url": "/encode", "content": nan.astype("<f4").tobytes(), "headers": OCT},
        {"url": "/decode", "json": {"fingerprint": m.fingerprint, "codes": [{"indices": [64], "counts": [1]}]}},
        {"url": "/v2/models/kpi5g-encode/infer", "json": {"inputs": [
            {"name": "x", "shape": [1, 79], "datatype": "FP32", "data": [0.0] * 79}]}}]
    before = runs(batching, "encoder")
    answers = asyncio.run(concurrently(batching, good[:2] + bad + good[2:]))
    coalesced = runs(batching, "encoder") - before
    served, refused = answers[:2] + answers[-2:], answers[2:-2]
    assert [(r.status_code, r.json()["kind"]) for r, _ in refused] == [(400, "invalid_input")] * len(bad)
    assert refused[0][0].json()["error"] == "vector 0 has 79 values; this model takes D = 80"
    assert refused[1][0].json()["error"] == "vector 0 holds NaN or infinity; values must be finite"
    assert all(took < DELAY_S for _, took in refused)  # refused before they could join the queue
    assert [r.status_code for r, _ in served] == [200] * len(good)
    for (r, _), x in zip(served, xs, strict=True):
        assert r.json()["codes"] == json_codes(kpi, x)
    assert 1 <= coalesced <= 2


def test_a_full_queue_sheds_with_503_and_retry_after_and_the_service_stays_healthy(models_dir: Path, serve: Serve,
                                                                                   kpi: ModelRuntime) -> None:
    env = {**SESSION_ENV, "SDLGM_MODELS_DIR": str(models_dir), "SDLGM_MAX_BATCH": "64",
           "SDLGM_QUEUE_MAX_VECTORS": "64", "SDLGM_BATCH_MAX_DELAY_MS": "500"}
    x = vectors(kpi, 64, 60)
    big: list[dict[str, Any]] = [{"url": "/encode", "content": x.astype("<f4").tobytes(), "headers": OCT}] * 5
    big += [{"url": "/encode", "json": {"vectors": x.tolist()}}] * 3
    with serve(env) as srv:
        answers = [r for r, _ in asyncio.run(concurrently(srv, big))]
        statuses = [r.status_code for r in answers]
        with srv.client() as c:
            samples = scrape(c)
            health = c.get("/healthz").status_code
            after = c.post("/encode", json={"vectors": x.tolist()})
            # Past the first check, on the exact count: 40 queued, then 30 more of a small JSON body.
            late = asyncio.run(staggered(srv, [
                {"url": "/encode", "content": x[:40].astype("<f4").tobytes(), "headers": OCT},
                {"url": "/encode", "json": {"vectors": [[0.5] * 80] * 30}},
                {"url": "/encode", "content": x[40:].astype("<f4").tobytes(), "headers": OCT}]))
            final = scrape(c)
    assert set(statuses) == {200, 503}, statuses
    shed = [r for r in answers if r.status_code == 503]
    for r in shed:
        assert r.headers["retry-after"] == "1"
        assert r.json()["kind"] == "overloaded"
        assert re.fullmatch(r"model 'kpi5g' cannot queue \d+ more vectors: \d+ of its 64 are queued "
                            r"\(SDLGM_QUEUE_MAX_VECTORS\); retry after 1 s", r.json()["error"])
    for r in answers:
        if r.status_code == 200:
            assert r.json()["codes"] == json_codes(kpi, x)
    labels = {"model": "kpi5g", "version": kpi.manifest.version}
    assert value(samples, "sdlgm_shed_requests_total", **labels) == len(shed)
    assert value(samples, "sdlgm_errors_total", kind="overloaded") == len(shed)
    assert (health, after.status_code) == (200, 200)
    assert [r.status_code for r in late] == [200, 503, 200]
    assert late[1].json()["error"] == ("model 'kpi5g' cannot queue 30 more vectors: 40 of its 64 are queued "
                                       "(SDLGM_QUEUE_MAX_VECTORS); retry after 1 s")
    assert late[2].json()["codes"] == json_codes(kpi, x[40:])  # 40 + 24 fit exactly
    assert value(final, "sdlgm_queue_vectors", **labels) == 0


async def staggered(server: Server, requests: list[dict[str, Any]], gap_s: float = 0.1) -> list[httpx.Response]:
    """The requests sent gap_s apart, each without waiting for the previous answers."""
    async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as c:
        tasks = []
        for kwargs in requests:
            tasks.append(asyncio.create_task(c.post(**kwargs)))
            await asyncio.sleep(gap_s)
        return list(await asyncio.gather(*tasks))


def merged(client: httpx.Client) -> Samples:
    """The samples of /metrics in multiprocess mode, where a family shows once some worker recorded in it."""
    r = client.get("/metrics")
    assert r.status_code == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(r.text)
            for s in f.samples}


def test_two_workers_answer_and_metrics_count_the_requests_of_both(models_dir: Path, serve: Serve,
                                                                   kpi: ModelRuntime) -> None:
    env = {**SESSION_ENV, "SDLGM_MODELS_DIR": str(models_dir), "SDLGM_WORKERS": "2", "SDLGM_INTRA_OP_THREADS": "1"}
    with serve(env) as srv:
        with srv.client() as c:
            before = merged(c)  # the start-up wait's /healthz are counted already
        pids: dict[int, int] = {}
        deadline = time.monotonic() + 60
        while len(pids) < 2 and time.monotonic() < deadline:  # a new connection each: either worker may take it
            pid = httpx.get(f"{srv.url}/healthz", headers={"connection": "close"}).json()["pid"]
            pids[pid] = pids.get(pid, 0) + 1
        sent = sum(pids.values())
        encoded = [httpx.post(f"{srv.url}/encode", json={"vector": vectors(kpi, 1, i)[0].tolist()},
                              headers={"connection": "close"}) for i in range(6)]
        with srv.client() as c:
            samples = merged(c)
            keep_alive = []  # one connection: every answer from one worker, each right after its request
            for _ in range(15):
                started = time.perf_counter()
                assert c.get("/healthz").status_code == 200
                keep_alive.append(time.perf_counter() - started)
        found = re.search(r"metrics merged in (\S+)", srv.log())
        assert found is not None, srv.log()
        metrics_dir = Path(found.group(1))
        assert metrics_dir.is_dir()
    assert len(pids) == 2 and srv.process.pid not in pids, pids
    healthz = {"endpoint": "/healthz", "model": "", "version": "", "status": "200"}
    assert value(samples, "sdlgm_requests_total", **healthz) - value(before, "sdlgm_requests_total", **healthz) == sent
    assert [r.status_code for r in encoded] == [200] * 6
    m = kpi.manifest
    assert value(samples, "sdlgm_requests_total", endpoint="/encode", model="kpi5g", version=m.version, status="200") == 6
    assert value(samples, "sdlgm_in_flight_requests") == 1  # the scrape itself, summed over the live workers
    assert value(samples, "sdlgm_model_info", model="kpi5g", version=m.version, fingerprint=m.fingerprint,
                 provider="CPUExecutionProvider") == 1  # each worker's 1, not their sum
    rss = {dict(labels)["pid"] for name, labels in samples if name == "process_resident_memory_bytes"}
    assert rss == {str(pid) for pid in pids}  # each worker's own process metrics, labelled with its pid
    assert not metrics_dir.exists()  # removed by the launcher on exit
    assert np.median(keep_alive) < 0.02  # no ~40 ms wait for a delayed ACK (TCP_NODELAY on the workers' sockets)
