"""The KServe V2 protocol with tritonclient, the client operators already run, against the session's real
`python -m service` on loopback: health, readiness and metadata, binary and JSON inference giving the same
codes and reconstructions as /encode and /decode, and its errors raised from 4xx answers; and the native
binary bodies of /encode and /decode agreeing with their JSON answers (in this process)."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from conftest import SESSION_SETTINGS, Server
from fastapi.testclient import TestClient
from service_cases import OCT
from tritonclient.utils import InferenceServerException

B = 7


@pytest.fixture(scope="module")
def tc(server: Server) -> Iterator[triton.InferenceServerClient]:
    c = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    yield c
    c.close()


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    """B vectors for kpi5g (D = 80)."""
    return np.random.default_rng(3).normal(size=(B, 80)).astype(np.float32) * 10


def test_health_readiness_and_metadata(tc: triton.InferenceServerClient, client: httpx.Client) -> None:
    assert tc.is_server_live() and tc.is_server_ready()
    assert tc.get_server_metadata() == {"name": "sdlgm", "version": "0.1.0", "extensions": ["binary_tensor_data",
                                                                                          "model_configuration"]}
    version = client.get("/v1/models/kpi5g").json()["version"]
    assert tc.is_model_ready("kpi5g-encode") and tc.is_model_ready("kpi5g-decode", version)
    assert tc.is_model_ready("emotions-predict") and not tc.is_model_ready("emotions-decode")
    meta = tc.get_model_metadata("kpi5g-encode")
    assert (meta["platform"], meta["versions"]) == ("sdlgm", [version])
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 80]}]
    assert [(o["name"], o["datatype"], o["shape"]) for o in meta["outputs"]] == [
        ("indices", "INT32", [-1, 4]), ("counts", "INT32", [-1, 4]), ("L_hat", "INT64", [-1]), ("code", "BYTES", [-1])]
    predict = tc.get_model_metadata("emotions-predict")
    assert [(o["name"], o["datatype"], o["shape"]) for o in predict["outputs"]] == [
        ("probabilities", "FP32", [-1, 6]), ("labels", "BOOL", [-1, 6])]


def test_model_configuration_declares_the_tensors_without_the_batch(tc: triton.InferenceServerClient) -> None:
    """Triton's model configuration extension (what perf_analyzer reads): each tensor of the metadata with
    its batch dimension dropped, one value a row as dims [1] reshaped to [], TYPE_STRING for BYTES."""
    for name in ("kpi5g-encode", "kpi5g-decode", "emotions-predict"):
        meta, config = tc.get_model_metadata(name), tc.get_model_config(name)
        assert config == tc.get_model_config(name, meta["versions"][0])
        assert (config["name"], config["max_batch_size"], config["dynamic_batching"]) == (
            name, SESSION_SETTINGS["max_batch"], {"max_queue_delay_microseconds": 0})
        for key, tensors in (("input", meta["inputs"]), ("output", meta["outputs"])):
            expected = []
            for t in tensors:
                entry = {"name": t["name"], "data_type": "TYPE_" + t["datatype"].replace("BYTES", "STRING"),
                         "dims": t["shape"][1:] or [1]}
                expected.append(entry if t["shape"][1:] else {**entry, "reshape": {"shape": []}})
            assert config[key] == expected
    assert tc.get_model_config("kpi5g-encode")["output"][2] == {
        "name": "L_hat", "data_type": "TYPE_INT64", "dims": [1], "reshape": {"shape": []}}
    with pytest.raises(InferenceServerException, match="model 'kpi5g-nothing' is not served"):
        tc.get_model_config("kpi5g-nothing")
    with pytest.raises(InferenceServerException, match="has no version '0.0.0-none'"):
        tc.get_model_config("kpi5g-encode", "0.0.0-none")


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_encode_and_decode_agree_with_the_native_endpoints(tc: triton.InferenceServerClient, client: httpx.Client,
                                                           x: np.ndarray, binary: bool) -> None:
    native = client.post("/encode", json={"vectors": x.tolist()}).json()
    inp = triton.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    outs = [triton.InferRequestedOutput(n, binary_data=binary) for n in ("indices", "counts", "L_hat", "code")]
    res = tc.infer("kpi5g-encode", [inp], outputs=outs)
    assert res.get_response()["parameters"]["fingerprint"] == native["fingerprint"]
    indices, counts = res.as_numpy("indices"), res.as_numpy("counts")
    for i, code in enumerate(native["codes"]):
        n = code["nnz"]
        assert indices[i, :n].tolist() == code["indices"] and (indices[i, n:] == -1).all()
        assert counts[i, :n].tolist() == code["counts"] and (counts[i, n:] == 0).all()
    assert res.as_numpy("L_hat").tolist() == [c["L_hat"] for c in native["codes"]]
    blobs = [b if binary else base64.b64decode(b) for b in res.as_numpy("code").tolist()]
    assert blobs == [base64.b64decode(c["binary"]) for c in native["codes"]]

    expected = client.post("/decode", json={"fingerprint": native["fingerprint"], "codes": [
        {"binary": c["binary"]} for c in native["codes"]]}).json()["reconstructions"]
    code = triton.InferInput("code", [B], "BYTES")
    code.set_data_from_numpy(np.array(blobs if binary else [base64.b64encode(b) for b in blobs], dtype=object),
                             binary_data=binary)
    sparse = [triton.InferInput(n, list(a.shape), "INT32") for n, a in (("indices", indices), ("counts", counts))]
    for t, a in zip(sparse, (indices, counts), strict=True):
        t.set_data_from_numpy(a, binary_data=binary)
    for inputs in ([code], sparse):
        out = tc.infer("kpi5g-decode", inputs, outputs=[triton.InferRequestedOutput("x_hat", binary_data=binary)])
        np.testing.assert_array_equal(out.as_numpy("x_hat"), np.asarray(expected, dtype=np.float32))


def test_predict_agrees_with_the_native_endpoint(tc: triton.InferenceServerClient, client: httpx.Client) -> None:
    x = np.random.default_rng(4).uniform(size=(3, 72)).astype(np.float32)
    native = client.post("/predict?model=emotions", json={"vectors": x.tolist()}).json()
    inp = triton.InferInput("x", [3, 72], "FP32")
    inp.set_data_from_numpy(x)
    res = tc.infer("emotions-predict", [inp])
    probs = [[p[label] for label in native["labels"]] for p in (q["probabilities"] for q in native["predictions"])]
    np.testing.assert_allclose(res.as_numpy("probabilities"), probs, rtol=1e-6)
    labels = res.as_numpy("labels")
    assert [[lb for lb, on in zip(native["labels"], row, strict=True) if on] for row in labels] == [
        q["labels"] for q in native["predictions"]]


@pytest.mark.parametrize(("model", "datatype", "shape", "message"), [
    ("kpi5g-encode", "FP64", [1, 80], "input 'x' has datatype FP64; model 'kpi5g-encode' takes FP32"),
    ("kpi5g-encode", "FP32", [1, 79], "input 'x' has shape [1, 79]; model 'kpi5g-encode' takes [-1, 80]"),
    ("nope", "FP32", [1, 80], "model 'nope' is not served; models: emotions-encode, emotions-predict, "
     "kpi5g-decode, kpi5g-encode"),
])
def test_bad_requests_raise_the_servers_message(tc: triton.InferenceServerClient, model: str, datatype: str,
                                                shape: list[int], message: str) -> None:
    inp = triton.InferInput("x", shape, datatype)
    inp.set_data_from_numpy(np.zeros(shape, dtype=np.float64 if datatype == "FP64" else np.float32))
    with pytest.raises(InferenceServerException) as exc:
        tc.infer(model, [inp])
    assert exc.value.message() == message
    assert exc.value.status() == ("404" if model == "nope" else "400")
    assert tc.is_server_ready()


@pytest.mark.parametrize("fmt", ["v1", "enum"])
def test_native_binary_bodies_agree_with_json(api: TestClient, fmt: str) -> None:
    x = np.random.default_rng(5).normal(size=(B, 80)).astype(np.float32) * 10
    native = api.post("/encode", json={"vectors": x.tolist(), "format": fmt}).json()
    as_json = api.post(f"/encode?format={fmt}", content=x.tobytes(), headers=OCT)
    assert as_json.json() == native
    packed = api.post(f"/encode?format={fmt}", content=x.astype("<f4").tobytes(),
                      headers={**OCT, "accept": "application/octet-stream"})
    assert packed.headers["content-type"] == "application/octet-stream"
    assert packed.headers["x-sdlgm-fingerprint"] == native["fingerprint"]
    blobs = [base64.b64decode(c["binary"]) for c in native["codes"]]
    framing = b"".join(blobs) if fmt == "enum" else b"".join(len(b).to_bytes(2, "little") + b for b in blobs)
    assert packed.content == framing
    expected = api.post("/decode", json={"fingerprint": native["fingerprint"], "format": fmt,
                                         "codes": [{"binary": c["binary"]} for c in native["codes"]]}).json()
    rows = api.post(f"/decode?format={fmt}", content=packed.content, headers={
        **OCT, "accept": "application/octet-stream", "X-SDLGM-Fingerprint": native["fingerprint"]})
    np.testing.assert_array_equal(np.frombuffer(rows.content, dtype="<f4").reshape(B, 80),
                                  np.asarray(expected["reconstructions"], dtype=np.float32))
    by_query = api.post(f"/decode?format={fmt}&fingerprint={native['fingerprint']}", content=packed.content,
                        headers=OCT)
    assert by_query.json() == expected
