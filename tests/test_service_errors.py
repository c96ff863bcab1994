"""Every bad-input case against the session's real server: a table of requests with the status and the
error text each must get, all in the one JSON shape {"error", "kind"}; and the server stays healthy.

The session server runs with SDLGM_MAX_BATCH=300 and SDLGM_MAX_BODY_BYTES=1 MiB (conftest.SESSION_ENV);
kpi5g has D = 80, K = 64, L0 = 4; emotions is supervised (no decoder).
"""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from conftest import Server

V = [0.5] * 80
JSON = {"content-type": "application/json"}
FP = "0" * 64  # replaced by kpi5g's fingerprint
FP_EMOTIONS = "1" * 64  # replaced by emotions' fingerprint


@dataclass
class Case:
    id: str
    path: str
    body: Any = None  # sent as JSON unless `content` is given
    status: int = 400
    error: str = ""
    content: str | bytes | None = None
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON))
    method: str = "POST"


def dec(*codes: dict[str, Any], fp: str = FP) -> dict[str, Any]:
    return {"fingerprint": fp, "codes": list(codes)}


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


CASES = [
    Case("wrong dimension", "/encode", {"vector": V[:79]}, error="vector 0 has 79 values; this model takes D = 80"),
    Case("ragged batch", "/encode", {"vectors": [V, V + [1.0]]}, error="vector 1 has 81 values"),
    Case("NaN", "/encode", content='{"vector": [NaN' + ", 0" * 79 + "]}", error="body.vector.0: Input should be a finite number"),
    Case("Infinity", "/encode", content='{"vector": [0, -Infinity' + ", 0" * 78 + "]}", error="body.vector.1: Input should be a finite number"),
    Case("overflowing literal", "/encode", content='{"vector": [1e999' + ", 0" * 79 + "]}", error="finite number"),
    Case("over float32", "/encode", {"vector": [1e300] + V[1:]}, error="values must fit in float32"),
    Case("string value", "/encode", {"vector": ["abc"] + V[1:]}, error="body.vector.0: Input should be a valid number"),
    Case("numeric string", "/encode", {"vector": ["1.5"] + V[1:]}, error="Input should be a valid number"),
    Case("boolean value", "/encode", {"vector": [True] + V[1:]}, error="Input should be a valid number"),
    Case("null value", "/encode", {"vector": [None] + V[1:]}, error="Input should be a valid number"),
    Case("vector not a list", "/encode", {"vector": 3}, error="Input should be a valid list"),
    Case("empty batch", "/encode", {"vectors": []}, error="empty batch: send at least one vector"),
    Case("batch over max", "/encode", {"vectors": [V] * 301}, error="batch of 301 vectors is over the maximum of 300 (SDLGM_MAX_BATCH)"),
    Case("no vector", "/encode", {}, error="give exactly one of 'vector' (one vector) or 'vectors' (a batch)"),
    Case("both forms", "/encode", {"vector": V, "vectors": [V]}, error="give exactly one of"),
    Case("unknown field", "/encode", {"vector": V, "model": "kpi5g"}, error="body.model: Extra inputs are not permitted"),
    Case("stochastic not bool", "/encode", {"vector": V, "stochastic": "yes"}, error="body.stochastic"),
    Case("negative seed", "/encode", {"vector": V, "stochastic": True, "seed": -1}, error="body.seed: Input should be greater than or equal to 0"),
    Case("invalid JSON", "/encode", content='{"vector": [1,', error="invalid JSON: EOF while parsing a value at line 1 column 14"),
    Case("not UTF-8", "/encode", content=b'{"vector": "\xff"}', error="invalid JSON: "),
    Case("JSON not an object", "/encode", [1, 2], error="Input should be a valid dictionary"),
    Case("unknown model", "/encode?model=nope", {"vector": V}, 404, "model 'nope' is not loaded; loaded models: emotions, kpi5g"),
    Case("unknown model info", "/v1/models/nope", method="GET", status=404, error="model 'nope' is not loaded"),
    Case("unknown path", "/nope", method="GET", status=404, error="Not Found"),
    Case("wrong method", "/encode", method="GET", status=405, error="Method Not Allowed"),
    Case("predict on unsupervised", "/predict", {"vector": V}, 422, "model 'kpi5g' has no labels (likelihood gaussian); /predict needs a supervised model: emotions"),
    Case("predict wrong dimension", "/predict?model=emotions", {"vector": V}, error="vector 0 has 80 values; this model takes D = 72"),
    Case("decode without decoder", "/decode?model=emotions", dec({"indices": [0], "counts": [1]}, fp=FP_EMOTIONS), 422, "model 'emotions' is supervised (sdlgm-dis) and has no decoder"),
    Case("index out of range", "/decode", dec({"indices": [3, 64], "counts": [1, 1]}), error="codes[0] is not a code of this model: indices must lie in [0, 63]"),
    Case("negative index", "/decode", dec({"indices": [-1], "counts": [1]}), error="indices must lie in [0, 63]"),
    Case("huge index", "/decode", dec({"indices": [2**70], "counts": [1]}), error="indices must lie in [0, 63]"),
    Case("negative count", "/decode", dec({"indices": [1, 2], "counts": [2, -1]}), error="counts must be positive"),
    Case("zero count", "/decode", dec({"indices": [1], "counts": [0]}), error="counts must be positive"),
    Case("counts over L0", "/decode", dec({"indices": [1], "counts": [1]}, {"indices": [1, 2], "counts": [5, 4]}), error="codes[1] is not a code of this model: counts sum to 9, over L0 = 4"),
    Case("repeated index", "/decode", dec({"indices": [1, 1], "counts": [1, 1]}), error="indices must not repeat"),
    Case("length mismatch", "/decode", dec({"indices": [1, 2], "counts": [1]}), error="2 indices but 1 counts"),
    Case("fractional count", "/decode", dec({"indices": [1], "counts": [1.5]}), error="body.codes.0.counts.0: Input should be a valid integer"),
    Case("half a sparse code", "/decode", dec({"indices": [1]}), error="a sparse code needs both 'indices' and 'counts'"),
    Case("both code forms", "/decode", dec({"indices": [1], "counts": [1], "binary": "AQA="}), error="not both"),
    Case("malformed base64", "/decode", dec({"binary": "@@not base64@@"}), error="codes[0].binary is not valid base64"),
    Case("binary wrong version", "/decode", dec({"binary": b64(bytes([2, 0]))}), error="code format version 2 is not supported"),
    Case("binary truncated", "/decode", dec({"binary": b64(bytes([1, 2, 5]))}), error="code declares 2 non-zeros, so 6 bytes, but has 3"),
    Case("binary index out of range", "/decode", dec({"binary": b64(bytes([1, 1, 200, 1]))}), error="indices must lie in [0, 63]"),
    Case("binary counts over L0", "/decode", dec({"binary": b64(bytes([1, 2, 3, 4, 5, 5]))}), error="counts sum to 10, over L0 = 4"),
    Case("no codes", "/decode", dec(), error="empty batch: send at least one code"),
    Case("codes over max", "/decode", dec(*[{"binary": "AQA="}] * 301), error="batch of 301 codes is over the maximum of 300"),
    Case("malformed fingerprint", "/decode", dec({"binary": "AQA="}, fp="abc"), error="body.fingerprint: String should match pattern"),
    Case("unknown fingerprint", "/decode", dec({"binary": "AQA="}, fp="f" * 64), 409, "the codes were made by the model with fingerprint ffffffffffff..., not by 'kpi5g'"),
    Case("another model's codes", "/decode", dec({"binary": "AQA="}, fp=FP_EMOTIONS), 409, "they are codes of model 'emotions': use ?model=emotions"),
    Case("text/plain", "/encode", content='{"vector": []}', headers={"content-type": "text/plain"}, status=415, error="content type 'text/plain' is not supported; send JSON (application/json)"),
    Case("no content type", "/decode", content="{}", headers={}, status=415, error="content type 'none' is not supported"),
    Case("form body", "/predict", content="vector=1", headers={"content-type": "application/x-www-form-urlencoded"}, status=415, error="not supported"),
]


@pytest.fixture(scope="module")
def fingerprints(client: httpx.Client) -> dict[str, str]:
    models = client.get("/v1/models").json()["models"]
    by_name = {m["name"]: m["fingerprint"] for m in models}
    return {FP: by_name["kpi5g"], FP_EMOTIONS: by_name["emotions"]}


def _fill(obj: Any, fps: dict[str, str]) -> Any:
    if isinstance(obj, dict):
        return {k: _fill(v, fps) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_fill(v, fps) for v in obj]
    return fps.get(obj, obj) if isinstance(obj, str) else obj


def _send(client: httpx.Client, case: Case, fps: dict[str, str]) -> httpx.Response:
    kwargs: dict[str, Any] = {"headers": case.headers}
    if case.content is not None:
        kwargs["content"] = case.content
    elif case.body is not None:
        kwargs["json"] = _fill(case.body, fps)
    return client.request(case.method, case.path, **kwargs)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gets_a_clear_4xx(client: httpx.Client, fingerprints: dict[str, str], case: Case) -> None:
    r = _send(client, case, fingerprints)
    assert r.status_code == case.status, r.text
    body = r.json()
    assert set(body) <= {"error", "kind", "detail"} and isinstance(body["kind"], str), body
    assert case.error in body["error"], body


def test_a_body_over_the_limit_is_refused_from_its_content_length(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"POST /encode HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Connection: close\r\nContent-Length: 2000000\r\n\r\n")  # and no body
        answer = b"".join(iter(lambda: s.recv(65536), b"")).decode()
    head, _, body = answer.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 413"), answer
    assert json.loads(body) == {"error": "request body of 2000000 bytes is over the limit of 1048576 bytes "
                                "(SDLGM_MAX_BODY_BYTES)", "kind": "payload_too_large"}


def test_a_chunked_body_over_the_limit_is_refused_while_streaming(client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"vectors": ['
        for _ in range(24):  # 1.5 MiB
            yield b"[" + b"0," * 32767 + b"0],"
        yield b"[0]]}"

    r = client.post("/encode", content=chunks(), headers=JSON)
    assert "content-length" not in r.request.headers
    assert r.status_code == 413
    assert r.json() == {"error": "request body is over the limit of 1048576 bytes (SDLGM_MAX_BODY_BYTES)",
                        "kind": "payload_too_large"}


def test_a_chunked_body_under_the_limit_is_served(client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"vectors": ['
        yield b",".join([b"[" + b",".join([b"0.5"] * 80) + b"]"] * 3)
        yield b"]}"

    r = client.post("/encode", content=chunks(), headers=JSON)
    assert r.status_code == 200, r.text
    assert len(r.json()["codes"]) == 3


def test_the_server_stays_healthy_after_bad_input(client: httpx.Client, fingerprints: dict[str, str]) -> None:
    for case in CASES:  # all of them again, back to back
        assert _send(client, case, fingerprints).status_code == case.status
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.post("/encode", json={"vector": V}).status_code == 200
