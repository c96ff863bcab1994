"""The table of bad requests and the exact answer each must get: status, kind and error text, all in the
one JSON shape {"error", "kind"} (+ "detail" for field errors). `test_service_errors` runs it against the
app in this process; `test_service_e2e` replays it against a real server, which must stay healthy.

The settings are the session's (conftest.SESSION_SETTINGS: SDLGM_MAX_BATCH=300, SDLGM_MAX_BODY_BYTES=1 MiB);
kpi5g has D = 80, K = 64, L0 = 4; emotions is supervised (D = 72, K = 6, no decoder).
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

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
OCT = {"content-type": "application/octet-stream"}
ENUM_CODES = math.comb(64 + 4, 4)  # kpi5g's code space: 3-byte enum codes
V2_MODELS = "emotions-encode, emotions-predict, kpi5g-decode, kpi5g-encode"
ENC, DEC = "/v2/models/kpi5g-encode/infer", "/v2/models/kpi5g-decode/infer"
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
    Case("negative index", "/decode", dec({"indices": [-1], "counts": [1]}),
         error=field_error("body.codes.0.indices.0: Input should be greater than or equal to 0")),
    Case("huge index", "/decode", dec({"indices": [2**70], "counts": [1]}),
         error=not_a_code(0, "indices must lie in [0, 63] and counts sum to at most L0 = 4")),
    Case("huge count", "/decode", dec({"indices": [1], "counts": [2**70]}),
         error=not_a_code(0, "indices must lie in [0, 63] and counts sum to at most L0 = 4")),
    Case("negative count", "/decode", dec({"indices": [1, 2], "counts": [2, -1]}),
         error=field_error("body.codes.0.counts.1: Input should be greater than or equal to 1")),
    Case("zero count", "/decode", dec({"indices": [1], "counts": [0]}),
         error=field_error("body.codes.0.counts.0: Input should be greater than or equal to 1")),
    Case("integral float count", "/decode", dec({"indices": [1], "counts": [1.0]}, {"indices": [1.0], "counts": [9]}),
         error=not_a_code(1, "counts sum to 9, over L0 = 4")),  # 1.0 is an integer to JSON Schema, and taken
    Case("null vector beside a batch", "/encode", {"vector": None, "vectors": [V]},
         error=field_error("body: Value error, 'vector' is null; leave it out instead")),
    Case("null binary beside a sparse code", "/decode", dec({"indices": [1], "counts": [1], "binary": None}),
         error=field_error("body.codes.0: Value error, 'binary' is null; leave it out instead")),
    Case("integral float seed out of range", "/encode", {"vector": V, "stochastic": True, "seed": 2.0**63},
         error=field_error("body.seed: Input should be less than 9223372036854775808")),
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
    Case("binary indices out of order", "/decode", dec({"binary": b64(bytes([1, 2, 7, 3, 1, 1]))}),
         error=not_a_code(0, "indices must increase")),
    Case("binary zero count", "/decode", dec({"binary": b64(bytes([1, 1, 7, 0]))}),
         error=not_a_code(0, "counts must be positive")),
    Case("binary counts over L0", "/decode", dec({"binary": b64(bytes([1, 2, 3, 4, 2, 3]))}),
         error=not_a_code(0, "counts sum to 5, over L0 = 4")),
]


def rows(*vectors: list[float]) -> bytes:
    return np.asarray(vectors, dtype="<f4").tobytes()


def framed(*blobs: bytes) -> bytes:
    return b"".join(len(b).to_bytes(2, "little") + b for b in blobs)


def x_input(shape: list[int] | None = None, datatype: str = "FP32", data: Any = None, **extra: Any) -> dict[str, Any]:
    return {"name": "x", "shape": shape or [1, 80], "datatype": datatype,
            **({"data": V if data is None else data} if "parameters" not in extra else {}), **extra}


def infer(*inputs: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"inputs": list(inputs), **extra}


def binary_infer(header: dict[str, Any], tail: bytes, declared: int | str | None = None) -> tuple[bytes, dict[str, str]]:
    """A V2 binary body and its headers: the JSON header, then tail; declared overrides the header length."""
    head = json.dumps(header).encode()
    return head + tail, {"Inference-Header-Content-Length": str(len(head) if declared is None else declared)}


def binary_case(id: str, path: str, header: dict[str, Any], tail: bytes, error: str, declared: int | str | None = None,
                status: int = 400, kind: str = INVALID) -> Case:
    content, headers = binary_infer(header, tail, declared)
    return Case(id, path, content=content, headers=headers, error=error, status=status, kind=kind)


def x_binary(size: int, shape: list[int] | None = None) -> dict[str, Any]:
    return x_input(shape, parameters={"binary_data_size": size})


def code_input(*blobs: bytes, binary: bool = False) -> dict[str, Any]:
    if binary:
        return {"name": "code", "shape": [len(blobs)], "datatype": "BYTES",
                "parameters": {"binary_data_size": sum(4 + len(b) for b in blobs)}}
    return {"name": "code", "shape": [len(blobs)], "datatype": "BYTES", "data": [b64(b) for b in blobs]}


def sparse_inputs(indices: list[list[int]], counts: list[list[int]]) -> list[dict[str, Any]]:
    return [{"name": n, "shape": [len(v), len(v[0])], "datatype": "INT32", "data": v}
            for n, v in (("indices", indices), ("counts", counts))]


NAN_ROW = V[:3] + [float("nan")] + V[4:]
EMPTY_CODE = bytes([1, 0])

BINARY_CASES = [
    Case("binary rows not whole", "/encode", content=b"\0" * 321, headers=OCT,
         error="binary body of 321 bytes is not whole rows of D = 80 float32 values (320 bytes a row)"),
    Case("binary empty body", "/encode", content=b"", headers=OCT, error="empty batch: send at least one vector"),
    Case("binary NaN row", "/encode", content=rows(V, NAN_ROW), headers=OCT,
         error="vector 1 holds NaN or infinity; values must be finite"),
    Case("binary infinite row", "/encode", content=rows([float("-inf")] + V[1:]), headers=OCT,
         error="vector 0 holds NaN or infinity; values must be finite"),
    Case("binary batch over max", "/encode", content=rows(*[V] * 301), headers=OCT,
         error="batch of 301 vectors is over the maximum of 300 (SDLGM_MAX_BATCH)"),
    Case("binary unknown format", "/encode?format=zip", content=rows(V), headers=OCT,
         error=field_error("query.format: Input should be 'v1', 'enum' or 'range'")),
    Case("binary format the model lacks", "/encode?model=emotions&format=range", content=rows([0.5] * 72),
         headers=OCT, status=422, kind="unsupported",
         error="model 'emotions' does not serve the 'range' format; it serves v1, enum"),
    Case("binary negative seed", "/encode?stochastic=true&seed=-1", content=rows(V), headers=OCT,
         error=field_error("query.seed: Input should be greater than or equal to 0")),
    Case("binary decode without fingerprint", "/decode", content=framed(EMPTY_CODE), headers=OCT,
         error="binary codes need the fingerprint of their model: send it in the X-SDLGM-Fingerprint header or "
         "the ?fingerprint= query parameter"),
    Case("binary decode malformed fingerprint", "/decode", content=framed(EMPTY_CODE),
         headers={**OCT, "X-SDLGM-Fingerprint": "abc"},
         error=field_error("header.x-sdlgm-fingerprint: String should match pattern '^[0-9a-f]{64}$'")),
    Case("binary decode another model's codes", "/decode", content=framed(EMPTY_CODE),
         headers={**OCT, "X-SDLGM-Fingerprint": FP_EMOTIONS}, status=409, kind="fingerprint_mismatch",
         error="the codes were made by the model with fingerprint FPEMO..., not by 'kpi5g' (FPKPI...); "
         "they are codes of model 'emotions': use ?model=emotions"),
    Case("binary decode on a model without decoder", "/decode?model=emotions", content=framed(EMPTY_CODE),
         headers={**OCT, "X-SDLGM-Fingerprint": FP_EMOTIONS}, status=422, kind="unsupported",
         error="model 'emotions' is supervised (sdlgm-dis) and has no decoder"),
    Case("binary decode empty body", f"/decode?fingerprint={FP}", content=b"", headers=OCT,
         error="empty batch: send at least one code"),
    Case("binary frame past the body", f"/decode?fingerprint={FP}", content=bytes([5, 0, 1, 0]), headers=OCT,
         error="code 0 declares 5 bytes but 2 remain"),
    Case("binary frame cut in its length", f"/decode?fingerprint={FP}", content=framed(EMPTY_CODE) + b"\x01",
         headers=OCT, error="code 1 is cut off in its length (at byte 4 of 5)"),
    Case("binary framed code invalid", f"/decode?fingerprint={FP}", content=framed(EMPTY_CODE, bytes([1, 1, 64, 1])),
         headers=OCT, error=not_a_code(1, RANGE)),
    Case("binary framed codes over max", f"/decode?fingerprint={FP}", content=framed(*[EMPTY_CODE] * 301), headers=OCT,
         error="batch of more than 300 codes is over the maximum (SDLGM_MAX_BATCH)"),
    Case("binary enum codes not whole", f"/decode?fingerprint={FP}&format=enum", content=bytes(4), headers=OCT,
         error="binary body of 4 bytes is not whole enum codes of 3 bytes"),
    Case("binary enum rank outside the space", f"/decode?fingerprint={FP}&format=enum",
         content=bytes(3) + (2**24 - 1).to_bytes(3, "little"), headers=OCT,
         error=not_a_code(1, f"code index {2**24 - 1} is outside the model's {ENUM_CODES} codes")),
    Case("binary body to predict", "/predict?model=emotions", content=bytes(288), headers=OCT, status=415,
         kind="unsupported_media_type", error=f"content type 'application/octet-stream' {NOT_JSON}"),
]

HEAD = len(json.dumps(infer(x_binary(320))))  # the JSON header of a one-vector binary request

V2_CASES = [
    Case("v2 unknown model", "/v2/models/nope", method="GET", status=404, kind="unknown_model",
         error=f"model 'nope' is not served; models: {V2_MODELS}"),
    Case("v2 unknown model ready", "/v2/models/nope/ready", method="GET", status=404, kind="unknown_model",
         error=f"model 'nope' is not served; models: {V2_MODELS}"),
    Case("v2 operation the bundle lacks", "/v2/models/kpi5g-predict/infer", infer(x_input()), 404, "unknown_model",
         f"model 'kpi5g-predict' is not served; models: {V2_MODELS}"),
    Case("v2 decode of a supervised bundle", "/v2/models/emotions-decode/infer", infer(code_input(EMPTY_CODE)), 404,
         "unknown_model", f"model 'emotions-decode' is not served; models: {V2_MODELS}"),
    Case("v2 unknown version", "/v2/models/kpi5g-encode/versions/9", method="GET", status=404, kind="unknown_model",
         error="model 'kpi5g-encode' has no version '9'; it has '1.1.0'"),
    Case("v2 wrong datatype", ENC, infer(x_input(datatype="FP64")),
         error="input 'x' has datatype FP64; model 'kpi5g-encode' takes FP32"),
    Case("v2 wrong width", ENC, infer(x_input([1, 79], data=V[:79])),
         error="input 'x' has shape [1, 79]; model 'kpi5g-encode' takes [-1, 80]"),
    Case("v2 wrong rank", ENC, infer(x_input([80])), error="input 'x' has shape [80]; model 'kpi5g-encode' takes [-1, 80]"),
    Case("v2 unknown input", ENC, infer({**x_input(), "name": "y"}),
         error="model 'kpi5g-encode' has no input 'y'; its inputs are x"),
    Case("v2 input twice", ENC, infer(x_input(), x_input()), error="input 'x' is given twice"),
    Case("v2 no x", "/v2/models/kpi5g-encode/infer", infer(), error=field_error(
        "body.inputs: List should have at least 1 item after validation, not 0")),
    Case("v2 data shorter than the shape", ENC, infer(x_input([2, 80])),
         error="input 'x' has shape [2, 80], so 160 values, but its data holds 80"),
    Case("v2 ragged data", ENC, infer(x_input([2, 80], data=[V, V[:79]])),
         error="input 'x': data is not a regular array: setting an array element with a sequence. The requested "
         "array has an inhomogeneous shape after 1 dimensions. The detected shape was (2,) + inhomogeneous part."),
    Case("v2 string data", ENC, infer(x_input(data=["a"] * 80)), error="input 'x': data must be FP32 values, not str"),
    Case("v2 NaN in JSON", ENC, content=json.dumps(infer(x_input(data=NAN_ROW))),
         error="input 'x' holds NaN or infinity; values must be finite"),
    Case("v2 over float32", ENC, infer(x_input(data=[1e39] + V[1:])),
         error="input 'x' holds NaN or infinity; values must be finite"),
    Case("v2 negative shape", ENC, infer(x_input([-1, 80])),
         error=field_error("body.inputs.0.shape.0: Input should be greater than or equal to 0")),
    Case("v2 empty batch", ENC, infer(x_input([0, 80], data=[])),
         error="empty batch: the inputs' first dimension must be at least 1"),
    Case("v2 batch over max", ENC, infer(x_input([301, 80], data=[V] * 301)),
         error="batch of 301 is over the maximum of 300 (SDLGM_MAX_BATCH)"),
    Case("v2 neither data nor binary", ENC, infer({"name": "x", "shape": [1, 80], "datatype": "FP32"}),
         error="input 'x' has neither 'data' nor parameters.binary_data_size"),
    Case("v2 unknown output", ENC, infer(x_input(), outputs=[{"name": "z"}]),
         error="model 'kpi5g-encode' has no output 'z'; its outputs are indices, counts, L_hat, code"),
    Case("v2 binary_data not a boolean", ENC, infer(x_input(), outputs=[{"name": "code", "parameters": {
        "binary_data": "yes"}}]), error=field_error("body.outputs.0.parameters.binary_data: Input should be a valid boolean")),
    Case("v2 invalid JSON", ENC, content='{"inputs": [', error="invalid JSON: EOF while parsing a list at line 1 column 12"),
    Case("v2 text/plain", ENC, content="{}", headers={"content-type": "text/plain"}, status=415,
         kind="unsupported_media_type",
         error="content type 'text/plain' is not supported; send JSON or a KServe V2 binary body (application/octet-stream)"),
    Case("v2 GET infer", ENC, method="GET", status=405, kind="method_not_allowed", error="Method Not Allowed"),
    # the binary tensor extension
    binary_case("v2 header length past the body", ENC, infer(x_binary(320)), rows(V), declared=99999,
                error=f"Inference-Header-Content-Length is 99999 but the body has only {HEAD + 320} bytes"),
    binary_case("v2 header length not a number", ENC, infer(x_binary(320)), rows(V), declared="12a",
                error="Inference-Header-Content-Length must be a number of bytes, not '12a'"),
    binary_case("v2 binary sizes over the body", ENC, infer(x_binary(640, [2, 80])), rows(V),
                error="the inputs' binary_data_size add up to 640 bytes, but 320 bytes follow the JSON header "
                f"(Inference-Header-Content-Length: {HEAD})"),
    binary_case("v2 bytes left after the binary inputs", ENC, infer(x_binary(320)), rows(V) + b"\0",
                error="the inputs' binary_data_size add up to 320 bytes, but 321 bytes follow the JSON header "
                f"(Inference-Header-Content-Length: {HEAD})"),
    binary_case("v2 binary size not the shape's", ENC, infer(x_binary(316)), rows(V)[:316],
                error="input 'x' of shape [1, 80] is 320 bytes of FP32, but its binary_data_size is 316"),
    binary_case("v2 both data and binary", ENC, infer({**x_input(), "parameters": {"binary_data_size": 320}}),
                rows(V), error="input 'x' has both 'data' and parameters.binary_data_size; give one"),
    binary_case("v2 binary NaN", ENC, infer(x_binary(320)), rows(NAN_ROW),
                error="input 'x' holds NaN or infinity; values must be finite"),
    binary_case("v2 negative binary size", ENC, infer(x_binary(-1)), b"", error=field_error(
        "body.inputs.0.parameters.binary_data_size: Input should be greater than or equal to 0")),
    Case("v2 binary inputs without header length", ENC, infer(x_binary(320)),
         error="the inputs' binary_data_size add up to 320 bytes, but 0 bytes follow the JSON header "
         "(Inference-Header-Content-Length: absent)"),
    # decode
    Case("v2 decode without codes", DEC, infer({"name": "indices", "shape": [1, 4], "datatype": "INT32",
                                                 "data": [1, -1, -1, -1]}),
         error="give the codes as 'code' (BYTES, format v1) or as both 'indices' and 'counts'"),
    Case("v2 decode both forms", DEC, infer(code_input(EMPTY_CODE), *sparse_inputs([[1, -1, -1, -1]], [[1, 0, 0, 0]])),
         error="give the codes as 'code' or as 'indices' and 'counts', not both"),
    Case("v2 decode batch sizes differ", DEC, infer(*sparse_inputs([[1, -1, -1, -1]], [[1, 0, 0, 0], [1, 0, 0, 0]])),
         error="the inputs' first dimensions differ: [1, 2]"),
    Case("v2 decode index out of range", DEC, infer(*sparse_inputs([[1, -1, -1, -1], [64, -1, -1, -1]],
                                                                  [[1, 0, 0, 0], [1, 0, 0, 0]])),
         error=not_a_code(1, "indices must lie in [0, 63], or be -1 as padding")),
    Case("v2 decode count on padding", DEC, infer(*sparse_inputs([[1, -1, -1, -1]], [[1, 1, 0, 0]])),
         error=not_a_code(0, "counts must be 0 where indices are -1 (padding)")),
    Case("v2 decode zero count", DEC, infer(*sparse_inputs([[1, 2, -1, -1]], [[1, 0, 0, 0]])),
         error=not_a_code(0, "counts must be positive")),
    Case("v2 decode repeated index", DEC, infer(*sparse_inputs([[1, 1, -1, -1]], [[1, 1, 0, 0]])),
         error=not_a_code(0, "indices must not repeat")),
    Case("v2 decode counts over L0", DEC, infer(*sparse_inputs([[1, 2, -1, -1]], [[3, 2, 0, 0]])),
         error=not_a_code(0, "counts sum to over L0 = 4")),
    Case("v2 decode INT64 indices", DEC, infer(*[{**t, "datatype": "INT64"} for t in sparse_inputs([[1, -1, -1, -1]],
                                                                                                   [[1, 0, 0, 0]])]),
         error="input 'indices' has datatype INT64; model 'kpi5g-decode' takes INT32"),
    Case("v2 decode huge index", DEC, infer(*sparse_inputs([[2**40, -1, -1, -1]], [[1, 0, 0, 0]])),
         error="input 'indices': values must fit in INT32"),
    Case("v2 decode invalid code", DEC, infer(code_input(EMPTY_CODE, bytes([1, 1, 7, 0]))),
         error=not_a_code(1, "counts must be positive")),
    Case("v2 decode code not base64", DEC, infer({**code_input(EMPTY_CODE), "data": ["@@"]}),
         error="input 'code': element 0 is not valid base64: Only base64 data is allowed"),
    binary_case("v2 decode BYTES element past the data", DEC, infer(code_input(EMPTY_CODE, binary=True)),
                bytes([9, 0, 0, 0, 1, 0]), error="input 'code': BYTES element 0 declares 9 bytes but 2 remain"),
    Case("v2 decode another model's fingerprint", DEC, infer(code_input(EMPTY_CODE), parameters={
        "fingerprint": FP_EMOTIONS}), status=409, kind="fingerprint_mismatch",
         error="the codes were made by the model with fingerprint FPEMO..., not by 'kpi5g' (FPKPI...); "
         "they are codes of model 'emotions': use ?model=emotions"),
    # predict
    Case("v2 predict wrong width", "/v2/models/emotions-predict/infer", infer(x_input()),
         error="input 'x' has shape [1, 80]; model 'emotions-predict' takes [-1, 72]"),
]
CASES += BINARY_CASES + V2_CASES


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
    kwargs: dict[str, Any] = {"headers": fill(case.headers, fps)}
    if case.content is not None:
        kwargs["content"] = case.content
    elif case.body is not None:
        kwargs["json"] = fill(case.body, fps)
    path = case.path
    for placeholder, fingerprint in fps.items():
        path = path.replace(placeholder, fingerprint)
    return client.request(case.method, path, **kwargs)
