"""The table of bad requests and the exact answer each must get: status, kind and error text, all in the
one JSON shape {"error", "kind"} (+ "detail" for field errors). `test_service_errors` runs it against the
app in this process; `test_service_e2e` replays it against a real server, which must stay healthy.

The settings are the session's (conftest.SESSION_SETTINGS: SDLGM_MAX_BATCH=300, SDLGM_MAX_BODY_BYTES=1 MiB);
kpi5g has D = 80, K = 64, L0 = 4; emotions is supervised (D = 72, K = 6, no decoder).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import httpx

V = [0.5] * 80
JSON = {"content-type": "application/json"}
FP = "0" * 64  # replaced by kpi5g's fingerprint
FP_EMOTIONS = "1" * 64  # replaced by emotions' fingerprint
INVALID = "invalid_input"
LIMIT = 1 << 20


@dataclass
class Case:
    id: str
    path: str
    body: Any = None  # sent as JSON unless `content` is given
    status: int = 400
    kind: str = INVALID
    error: str = ""  # the whole text
    content: str | bytes | None = None
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON))
    method: str = "POST"


def dec(*codes: dict[str, Any], fp: str = FP) -> dict[str, Any]:
    return {"fingerprint": fp, "codes": list(codes)}


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def field_error(*clauses: str) -> str:
    """The message of a request that fails schema validation, one clause per field error."""
    return "invalid request: " + "; ".join(clauses)


def not_a_code(i: int, why: str) -> str:
    return f"codes[{i}] is not a code of this model: {why}"


RANGE = "indices must lie in [0, 63]"
NOT_LOADED = "; loaded models: emotions, kpi5g"
NOT_JSON = "is not supported; send JSON (application/json)"
NOT_JSON_NOR_BINARY = "is not supported; send JSON (application/json) or application/octet-stream"

CASES = [
    # vectors
    Case("wrong dimension", "/encode", {"vector": V[:79]}, error="vector 0 has 79 values; this model takes D = 80"),
    Case("empty vector", "/encode", {"vector": []}, error="vector 0 has 0 values; this model takes D = 80"),
    Case("ragged batch", "/encode", {"vectors": [V, V + [1.0]]}, error="vector 1 has 81 values; this model takes D = 80"),
    Case("NaN", "/encode", content='{"vector": [NaN' + ", 0" * 79 + "]}",
         error=field_error("body.vector.0: Input should be a finite number")),
    Case("Infinity", "/encode", content='{"vector": [0, -Infinity' + ", 0" * 78 + "]}",
         error=field_error("body.vector.1: Input should be a finite number")),
    Case("overflowing literal", "/encode", content='{"vector": [1e999' + ", 0" * 79 + "]}",
         error=field_error("body.vector.0: Input should be a finite number")),
    Case("over float32", "/encode", {"vector": [1e300] + V[1:]}, error="values must fit in float32 (|x| < 3.4e38)"),
    Case("over float32 in a batch", "/encode", {"vectors": [V, V[:79] + [-4e38]]},
         error="values must fit in float32 (|x| < 3.4e38)"),
    Case("string value", "/encode", {"vector": ["abc"] + V[1:]},
         error=field_error("body.vector.0: Input should be a valid number")),
    Case("numeric string", "/encode", {"vector": V[:5] + ["1.5"] + V[6:]},
         error=field_error("body.vector.5: Input should be a valid number")),
    Case("boolean value", "/encode", {"vector": [True] + V[1:]},
         error=field_error("body.vector.0: Input should be a valid number")),
    Case("null value", "/encode", {"vector": [None] + V[1:]},
         error=field_error("body.vector.0: Input should be a valid number")),
    Case("vector not a list", "/encode", {"vector": 3}, error=field_error("body.vector: Input should be a valid list")),
    Case("empty batch", "/encode", {"vectors": []}, error="empty batch: send at least one vector"),
    Case("batch over max", "/encode", {"vectors": [V] * 301},
         error="batch of 301 vectors is over the maximum of 300 (SDLGM_MAX_BATCH)"),
    Case("no vector", "/encode", {},
         error=field_error("body: Value error, give exactly one of 'vector' (one vector) or 'vectors' (a batch)")),
    Case("both forms", "/encode", {"vector": V, "vectors": [V]},
         error=field_error("body: Value error, give exactly one of 'vector' (one vector) or 'vectors' (a batch)")),
    Case("unknown field", "/encode", {"vector": V, "model": "kpi5g"},
         error=field_error("body.model: Extra inputs are not permitted")),
    Case("stochastic not bool", "/encode", {"vector": V, "stochastic": "yes"},
         error=field_error("body.stochastic: Input should be a valid boolean")),
    Case("negative seed", "/encode", {"vector": V, "stochastic": True, "seed": -1},
         error=field_error("body.seed: Input should be greater than or equal to 0")),
    Case("seed over 63 bits", "/encode", {"vector": V, "stochastic": True, "seed": 2**63},
         error=field_error("body.seed: Input should be less than 9223372036854775808")),
    # bodies
    Case("invalid JSON", "/encode", content='{"vector": [1,',
         error="invalid JSON: EOF while parsing a value at line 1 column 14"),
    Case("not UTF-8", "/encode", content=b'{"vector": "\xff"}',
         error="invalid JSON: invalid unicode code point at line 1 column 13"),
    Case("JSON not an object", "/encode", [1, 2],
         error=field_error("body: Input should be a valid dictionary or object to extract fields from")),
    Case("body over the limit", "/encode", content=b" " * (LIMIT + 1), status=413, kind="payload_too_large",
         error=f"request body of {LIMIT + 1} bytes is over the limit of {LIMIT} bytes (SDLGM_MAX_BODY_BYTES)"),
    Case("text/plain", "/encode", content='{"vector": []}', headers={"content-type": "text/plain"}, status=415,
         kind="unsupported_media_type", error=f"content type 'text/plain' {NOT_JSON_NOR_BINARY}"),
    Case("no content type", "/decode", content="{}", headers={}, status=415, kind="unsupported_media_type",
         error=f"content type 'none' {NOT_JSON_NOR_BINARY}"),
    Case("form body", "/predict", content="vector=1", headers={"content-type": "application/x-www-form-urlencoded"},
         status=415, kind="unsupported_media_type", error=f"content type 'application/x-www-form-urlencoded' {NOT_JSON}"),
    # models, paths and methods
    Case("unknown model", "/encode?model=nope", {"vector": V}, 404, "unknown_model",
         f"model 'nope' is not loaded{NOT_LOADED}"),
    Case("unknown model to decode", "/decode?model=nope", dec({"binary": "AQA="}), 404, "unknown_model",
         f"model 'nope' is not loaded{NOT_LOADED}"),
    Case("unknown model to predict", "/predict?model=nope", {"vector": V}, 404, "unknown_model",
         f"model 'nope' is not loaded{NOT_LOADED}"),
    Case("unknown model info", "/v1/models/nope", method="GET", status=404, kind="unknown_model",
         error=f"model 'nope' is not loaded{NOT_LOADED}"),
    Case("model name too long", "/encode?model=" + "m" * 65, {"vector": V},
         error=field_error("query.model: String should have at most 64 characters")),
    Case("unknown path", "/nope", method="GET", status=404, kind="not_found", error="Not Found"),
    Case("wrong method", "/encode", method="GET", status=405, kind="method_not_allowed", error="Method Not Allowed"),
    Case("POST to a GET endpoint", "/healthz", {}, status=405, kind="method_not_allowed", error="Method Not Allowed"),
    # /predict
    Case("predict on unsupervised", "/predict", {"vector": V}, 422, "unsupported",
         "model 'kpi5g' has no labels (likelihood gaussian); /predict needs a supervised model: emotions"),
    Case("predict wrong dimension", "/predict?model=emotions", {"vector": V},
         error="vector 0 has 80 values; this model takes D = 72"),
    Case("predict empty batch", "/predict?model=emotions", {"vectors": []}, error="empty batch: send at least one vector"),
    Case("predict batch over max", "/predict?model=emotions", {"vectors": [[0.0] * 72] * 301},
         error="batch of 301 vectors is over the maximum of 300 (SDLGM_MAX_BATCH)"),
    # /decode: the model, the fingerprint, the batch
    Case("decode without decoder", "/decode?model=emotions", dec({"indices": [0], "counts": [1]}, fp=FP_EMOTIONS),
         422, "unsupported", "model 'emotions' is supervised (sdlgm-dis) and has no decoder"),
    Case("malformed fingerprint", "/decode", dec({"binary": "AQA="}, fp="abc"),
         error=field_error("body.fingerprint: String should match pattern '^[0-9a-f]{64}$'")),
    Case("unknown fingerprint", "/decode", dec({"binary": "AQA="}, fp="f" * 64), 409, "fingerprint_mismatch",
         "the codes were made by the model with fingerprint ffffffffffff..., not by 'kpi5g' (FPKPI...)"),
    Case("another model's codes", "/decode", dec({"binary": "AQA="}, fp=FP_EMOTIONS), 409, "fingerprint_mismatch",
         "the codes were made by the model with fingerprint FPEMO..., not by 'kpi5g' (FPKPI...); "
         "they are codes of model 'emotions': use ?model=emotions"),
    Case("no codes", "/decode", dec(), error="empty batch: send at least one code"),
    Case("codes over max", "/decode", dec(*[{"binary": "AQA="}] * 301),
         error="batch of 301 codes is over the maximum of 300 (SDLGM_MAX_BATCH)"),
    # /decode: sparse codes
    Case("index out of range", "/decode", dec({"indices": [3, 64], "counts": [1, 1]}), error=not_a_code(0, RANGE)),
    Case("negative index", "/decode", dec({"indices": [-1], "counts": [1]}), error=not_a_code(0, RANGE)),
    Case("huge index", "/decode", dec({"indices": [2**70], "counts": [1]}),
         error=not_a_code(0, "indices must lie in [0, 63] and counts sum to at most L0 = 4")),
    Case("huge count", "/decode", dec({"indices": [1], "counts": [2**70]}),
         error=not_a_code(0, "indices must lie in [0, 63] and counts sum to at most L0 = 4")),
    Case("negative count", "/decode", dec({"indices": [1, 2], "counts": [2, -1]}),
         error=not_a_code(0, "counts must be positive")),
    Case("zero count", "/decode", dec({"indices": [1], "counts": [0]}), error=not_a_code(0, "counts must be positive")),
    Case("counts over L0", "/decode", dec({"indices": [1], "counts": [1]}, {"indices": [1, 2], "counts": [1, 4]}),
         error=not_a_code(1, "counts sum to 5, over L0 = 4")),
    Case("repeated index", "/decode", dec({"indices": [1, 1], "counts": [1, 1]}),
         error=not_a_code(0, "indices must not repeat")),
    Case("length mismatch", "/decode", dec({"indices": [1, 2], "counts": [1]}),
         error=not_a_code(0, "2 indices but 1 counts")),
    Case("fractional count", "/decode", dec({"indices": [1], "counts": [1.5]}),
         error=field_error("body.codes.0.counts.0: Input should be a valid integer")),
    Case("index as a string", "/decode", dec({"indices": ["1"], "counts": [1]}),
         error=field_error("body.codes.0.indices.0: Input should be a valid integer")),
    Case("half a sparse code", "/decode", dec({"indices": [1]}),
         error=field_error("body.codes.0: Value error, a sparse code needs both 'indices' and 'counts'")),
    Case("both code forms", "/decode", dec({"indices": [1], "counts": [1], "binary": "AQA="}),
         error=field_error("body.codes.0: Value error, give a code as 'indices' and 'counts', or as 'binary', not both")),
    Case("an empty code object", "/decode", dec({}),
         error=field_error("body.codes.0: Value error, give a code as 'indices' and 'counts', or as 'binary', not both")),
    # /decode: binary codes
    Case("malformed base64", "/decode", dec({"binary": "AQA="}, {"binary": "@@not base64@@"}),
         error="codes[1].binary is not valid base64: Only base64 data is allowed"),
    Case("base64 without padding", "/decode", dec({"binary": "AQA"}),
         error="codes[0].binary is not valid base64: Incorrect padding"),
    Case("binary over 1024 characters", "/decode", dec({"binary": "A" * 1028}),
         error=field_error("body.codes.0.binary: String should have at most 1024 characters")),
    Case("binary of one byte", "/decode", dec({"binary": b64(bytes([1]))}),
         error=not_a_code(0, "code is 1 bytes; a code has at least 2")),
    Case("binary wrong version", "/decode", dec({"binary": b64(bytes([2, 0]))}),
         error=not_a_code(0, "code format version 2 is not supported (expected 1)")),
    Case("binary truncated", "/decode", dec({"binary": b64(bytes([1, 2, 5]))}),
         error=not_a_code(0, "code declares 2 non-zeros, so 6 bytes, but has 3")),
    Case("binary with trailing bytes", "/decode", dec({"binary": b64(bytes([1, 1, 5, 1, 0]))}),
         error=not_a_code(0, "code declares 1 non-zeros, so 4 bytes, but has 5")),
    Case("binary index out of range", "/decode", dec({"binary": b64(bytes([1, 1, 200, 1]))}), error=not_a_code(0, RANGE)),
    Case("binary index at K", "/decode", dec({"binary": b64(bytes([1, 1, 64, 1]))}), error=not_a_code(0, RANGE)),
    Case("binary repeated index", "/decode", dec({"binary": b64(bytes([1, 2, 7, 7, 1, 1]))}),
         error=not_a_code(0, "indices must not repeat")),
    Case("binary zero count", "/decode", dec({"binary": b64(bytes([1, 1, 7, 0]))}),
         error=not_a_code(0, "counts must be positive")),
    Case("binary counts over L0", "/decode", dec({"binary": b64(bytes([1, 2, 3, 4, 2, 3]))}),
         error=not_a_code(0, "counts sum to 5, over L0 = 4")),
]


def fill(obj: Any, fps: dict[str, str]) -> Any:
    """obj with the placeholder fingerprints replaced by the real ones."""
    if isinstance(obj, dict):
        return {k: fill(v, fps) for k, v in obj.items()}
    if isinstance(obj, list):
        return [fill(v, fps) for v in obj]
    return fps.get(obj, obj) if isinstance(obj, str) else obj


def fingerprints(client: httpx.Client) -> dict[str, str]:
    by_name = {m["name"]: m["fingerprint"] for m in client.get("/v1/models").json()["models"]}
    return {FP: by_name["kpi5g"], FP_EMOTIONS: by_name["emotions"]}


def expected_error(case: Case, fps: dict[str, str]) -> str:
    """The case's error text with the fingerprints' 12-character prefixes filled in."""
    return case.error.replace("FPKPI", fps[FP][:12]).replace("FPEMO", fps[FP_EMOTIONS][:12])


def send(client: httpx.Client, case: Case, fps: dict[str, str]) -> httpx.Response:
    kwargs: dict[str, Any] = {"headers": case.headers}
    if case.content is not None:
        kwargs["content"] = case.content
    elif case.body is not None:
        kwargs["json"] = fill(case.body, fps)
    return client.request(case.method, case.path, **kwargs)
