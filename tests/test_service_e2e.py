"""End to end with real `python -m service` processes on loopback: train a tiny kpi5g model with the real
CLI, export its bundle, serve it, and round-trip encode -> decode to reconstructions in original units;
the session server's readiness and Prometheus scrape, its 413s at the socket (a declared Content-Length
with no body, a chunked body drained while the client still sends), the bad-input table replayed with
the server staying healthy; SDLGM_LOG_LEVEL and the CUDA fallback as the process logs them."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from conftest import SESSION_SETTINGS, Server, make_bundle
from service_cases import CASES, JSON, V, fingerprints, send
from test_service_metrics import scrape, value

Serve = Callable[..., AbstractContextManager[Server]]
LIMIT = SESSION_SETTINGS["max_body_bytes"]


def test_train_export_serve_round_trip(tmp_path: Path, serve: Serve) -> None:
    bundle = make_bundle("configs/kpi5g-shared.yaml", tmp_path / "run", tmp_path / "models" / "edge", iterations=5)
    manifest = json.loads((bundle / "manifest.json").read_text())
    mean, std = (np.asarray(manifest["standardization"][k]) for k in ("mean", "std"))
    x = mean + np.random.default_rng(0).normal(size=(16, manifest["D"])) * std
    env = {"SDLGM_MODELS_DIR": str(tmp_path / "models"), "SDLGM_DEFAULT_MODEL": "edge"}
    with serve(env) as srv, srv.client() as c:
        assert c.get("/readyz").status_code == 200
        enc = c.post("/encode", json={"vectors": x.tolist()})
        assert enc.status_code == 200, enc.text
        codes = enc.json()["codes"]
        assert enc.json()["fingerprint"] == manifest["fingerprint"]
        assert all(0 <= c["L_hat"] <= manifest["L0"] and c["size_bytes"] < 4 * manifest["D"] for c in codes)
        dec = c.post("/decode", json={"fingerprint": manifest["fingerprint"],
                                      "codes": [{"binary": code["binary"]} for code in codes]})
        assert dec.status_code == 200, dec.text
    rec = np.asarray(dec.json()["reconstructions"])
    assert rec.shape == x.shape and np.isfinite(rec).all()
    # In original units: the reconstructions sit within a few standard deviations of the feature means.
    assert (np.abs(rec - mean) < 10 * std).all()


def test_the_session_server_is_ready_and_scraped(client: httpx.Client) -> None:
    ready = client.get("/readyz")
    assert (ready.status_code, ready.json()) == (200, {"ready": True, "models": ["emotions", "kpi5g"],
                                                       "reasons": [], "refused": {}})
    before = scrape(client)
    assert client.post("/encode", json={"vectors": [V, V]}).status_code == 200
    after = scrape(client)
    kpi = {"model": "kpi5g", "version": client.get("/v1/models/kpi5g").json()["version"]}
    ok = {"endpoint": "/encode", **kpi, "status": "200"}
    assert value(after, "sdlgm_requests_total", **ok) - value(before, "sdlgm_requests_total", **ok) == 1
    assert value(after, "sdlgm_input_bytes_total", **kpi) - value(before, "sdlgm_input_bytes_total", **kpi) == 2 * 80 * 4
    infos = [s for s in after if s[0] == "sdlgm_model_info"]
    assert sorted(dict(labels)["model"] for _, labels in infos) == ["emotions", "kpi5g"]


def test_a_body_over_the_limit_is_refused_from_its_content_length(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"POST /encode HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Connection: close\r\nContent-Length: 2000000\r\n\r\n")  # and no body
        answer = b"".join(iter(lambda: s.recv(65536), b"")).decode()
    head, _, body = answer.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 413"), answer
    assert json.loads(body) == {"error": f"request body of 2000000 bytes is over the limit of {LIMIT} bytes "
                                "(SDLGM_MAX_BODY_BYTES)", "kind": "payload_too_large"}


def test_a_header_length_of_a_non_ascii_digit_is_refused_not_a_500(server: Server) -> None:
    """'\xb2' is '²' in latin-1 (how headers are read): a digit to str.isdigit but not to int(). Found by
    tests/test_fuzz.py."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"POST /v2/models/kpi5g-encode/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Inference-Header-Content-Length: \xb2\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}")
        answer = b"".join(iter(lambda: s.recv(65536), b""))
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), answer
    assert json.loads(body) == {"error": "Inference-Header-Content-Length must be a number of bytes, not '\xb2'",
                                "kind": "invalid_input"}


def test_a_chunked_body_over_the_limit_is_refused_while_streaming(client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"vectors": ['
        for _ in range(24):  # 1.5 MiB
            yield b"[" + b"0," * 32767 + b"0],"
        yield b"[0]]}"

    r = client.post("/encode", content=chunks(), headers=JSON)
    assert "content-length" not in r.request.headers
    assert r.status_code == 413
    assert r.json() == {"error": f"request body is over the limit of {LIMIT} bytes (SDLGM_MAX_BODY_BYTES)",
                        "kind": "payload_too_large"}


def test_a_chunked_body_under_the_limit_is_served(client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"vectors": ['
        yield b",".join([b"[" + b",".join([b"0.5"] * 80) + b"]"] * 3)
        yield b"]}"

    r = client.post("/encode", content=chunks(), headers=JSON)
    assert r.status_code == 200, r.text
    assert len(r.json()["codes"]) == 3


def test_the_server_stays_healthy_after_bad_input(client: httpx.Client) -> None:
    fps = fingerprints(client)
    for case in CASES:  # every case of the in-process table, back to back, each with its status
        r = send(client, case, fps)
        assert (r.status_code, r.json()["kind"]) == (case.status, case.kind), case.id
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.post("/encode", json={"vector": V}).status_code == 200


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="this onnxruntime has CUDA")
def test_the_log_level_and_the_cuda_fallback_as_the_process_logs_them(models_dir: Path, serve: Serve) -> None:
    env = {"SDLGM_MODELS_DIR": str(models_dir), "SDLGM_PROVIDER": "cuda", "SDLGM_LOG_LEVEL": "warning"}
    with serve(env) as srv, srv.client() as c:
        assert c.get("/readyz").status_code == 200
        log = srv.log()
    assert "WARNING sdlgm.service: SDLGM_PROVIDER=cuda but onnxruntime has no CUDAExecutionProvider" in log
    assert "loaded model" not in log  # an info line, below SDLGM_LOG_LEVEL=warning
