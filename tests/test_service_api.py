"""Success cases of every endpoint against the app in this process: codes equal to onnxruntime +
bundle.codes computed here, encode -> decode round trips in both code forms, seeded stochastic codes,
batches of exactly SDLGM_MAX_BATCH, model selection, predictions at per-label thresholds, model metadata,
health, and docs pages that need no other host."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from conftest import SESSION_SETTINGS, open_app, settings_of
from fastapi.testclient import TestClient

from bundle import codes
from bundle.manifest import Manifest, load_manifest

MAX_BATCH = SESSION_SETTINGS["max_batch"]


class Direct:
    """The bundle run with onnxruntime in this process: what the service must agree with."""

    def __init__(self, bundle: Path) -> None:
        self.m: Manifest = load_manifest(bundle)
        self.s = {r: ort.InferenceSession(str(bundle / g.file), providers=["CPUExecutionProvider"])
                  for r, g in self.m.graphs.present().items()}

    def logits(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.s["encoder"].run(None, {"x": x})[0], self.s["sparsity"].run(None, {"x": x})[0]

    def code(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return codes.deterministic_code(*self.logits(x), self.m.L0)

    def decode(self, z: np.ndarray) -> np.ndarray:
        return self.s["decoder"].run(None, {"z": z.astype(np.float32)})[0]

    def vectors(self, n: int, seed: int = 0) -> np.ndarray:
        st = self.m.standardization
        assert st is not None
        rng = np.random.default_rng(seed)
        return (np.asarray(st.mean) + rng.normal(size=(n, self.m.D)) * np.asarray(st.std)).astype(np.float32)


@pytest.fixture(scope="module")
def kpi(models_dir: Path) -> Direct:
    return Direct(models_dir / "kpi5g")


@pytest.fixture(scope="module")
def emo(models_dir: Path) -> Direct:
    return Direct(models_dir / "emotions")


def test_healthz_and_readyz(api: TestClient) -> None:
    assert api.get("/healthz").json() == {"status": "ok", "pid": os.getpid()}  # the app runs in this process
    r = api.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {"ready": True, "models": ["emotions", "kpi5g"], "reasons": [], "refused": {}}


@pytest.mark.parametrize("batch", [1, 37, MAX_BATCH])
def test_encode_gives_the_deterministic_code_of_onnxruntime(api: TestClient, kpi: Direct, batch: int) -> None:
    x = kpi.vectors(batch, seed=batch)
    body = {"vector": x[0].tolist()} if batch == 1 else {"vectors": x.tolist()}
    r = api.post("/encode", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["model"], out["fingerprint"], out["stochastic"]) == ("kpi5g", kpi.m.fingerprint, False)
    L_hat, counts = kpi.code(x)
    assert len(out["codes"]) == batch
    for c, L, row in zip(out["codes"], L_hat, counts, strict=True):
        idx, cnt = codes.to_sparse(row)
        blob = codes.pack(idx, cnt, kpi.m.K)
        assert (c["indices"], c["counts"], c["L_hat"], c["nnz"]) == (idx.tolist(), cnt.tolist(), L, len(idx))
        assert base64.b64decode(c["binary"]) == blob
        assert c["size_bytes"] == len(blob) == codes.code_size(len(idx), kpi.m.K)


def test_decode_of_both_code_forms_gives_the_decoders_reconstruction(api: TestClient, kpi: Direct) -> None:
    x = kpi.vectors(20, seed=1)
    enc = api.post("/encode", json={"vectors": x.tolist()}).json()
    fp = enc["fingerprint"]
    sparse = [{"indices": c["indices"], "counts": c["counts"]} for c in enc["codes"]]
    binary = [{"binary": c["binary"]} for c in enc["codes"]]
    r1 = api.post("/decode", json={"fingerprint": fp, "codes": sparse})
    r2 = api.post("/decode", json={"fingerprint": fp, "codes": binary})
    assert r1.status_code == r2.status_code == 200, r1.text + r2.text
    assert r1.json() == r2.json()
    rec = np.asarray(r1.json()["reconstructions"])
    assert rec.shape == (20, kpi.m.D)
    _, counts = kpi.code(x)
    np.testing.assert_allclose(rec, kpi.decode(counts), rtol=1e-5, atol=1e-6 * np.abs(rec).max())


def test_a_batch_of_exactly_the_maximum_is_served_by_every_endpoint(api: TestClient, kpi: Direct,
                                                                      emo: Direct) -> None:
    enc = api.post("/encode", json={"vectors": kpi.vectors(MAX_BATCH).tolist()})
    assert enc.status_code == 200, enc.text
    codes_in = [{"binary": c["binary"]} for c in enc.json()["codes"]]
    dec = api.post("/decode", json={"fingerprint": kpi.m.fingerprint, "codes": codes_in})
    assert dec.status_code == 200, dec.text
    assert len(dec.json()["reconstructions"]) == MAX_BATCH
    pred = api.post("/predict", params={"model": "emotions"}, json={"vectors": emo.vectors(MAX_BATCH).tolist()})
    assert pred.status_code == 200, pred.text
    assert len(pred.json()["predictions"]) == MAX_BATCH


def test_an_empty_code_decodes_to_the_bias(api: TestClient, kpi: Direct) -> None:
    r = api.post("/decode", json={"fingerprint": kpi.m.fingerprint, "codes": [{"indices": [], "counts": []}]})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["reconstructions"], kpi.decode(np.zeros((1, kpi.m.K))), rtol=1e-5)


def test_stochastic_codes_with_a_seed_are_reproducible(api: TestClient, kpi: Direct) -> None:
    body = {"vectors": kpi.vectors(50, seed=2).tolist(), "stochastic": True, "seed": 7}
    a, b = api.post("/encode", json=body).json(), api.post("/encode", json=body).json()
    c = api.post("/encode", json={**body, "seed": 8}).json()
    assert a["stochastic"] is True
    assert a["codes"] == b["codes"]
    assert a["codes"] != c["codes"]
    for code in a["codes"]:
        assert sum(code["counts"]) == code["L_hat"] <= kpi.m.L0
        codes.unpack(base64.b64decode(code["binary"]), kpi.m.K, kpi.m.L0)


def test_the_model_is_chosen_by_the_query_parameter(api: TestClient, kpi: Direct, emo: Direct) -> None:
    x = emo.vectors(3)
    r = api.post("/encode", params={"model": "emotions"}, json={"vectors": x.tolist()})
    assert r.status_code == 200, r.text
    assert (r.json()["model"], r.json()["fingerprint"]) == ("emotions", emo.m.fingerprint)
    L_hat, counts = emo.code(x)
    assert [c["counts"] for c in r.json()["codes"]] == [codes.to_sparse(row)[1].tolist() for row in counts]
    explicit = api.post("/encode", params={"model": "kpi5g"}, json={"vector": kpi.vectors(1)[0].tolist()})
    default = api.post("/encode", json={"vector": kpi.vectors(1)[0].tolist()})
    assert explicit.json() == default.json()


def test_predict_gives_label_probabilities_and_the_thresholded_labels(api: TestClient, emo: Direct) -> None:
    x = emo.vectors(10, seed=3)
    r = api.post("/predict", params={"model": "emotions"}, json={"vectors": x.tolist()})
    assert r.status_code == 200, r.text
    out = r.json()
    labels, thresholds = emo.m.labels, emo.m.thresholds
    assert labels is not None and thresholds is not None
    assert (out["model"], out["labels"]) == ("emotions", labels)
    pi, lam = emo.logits(x)
    probs = codes.label_probability(pi, lam, emo.m.L0)
    L_hat = codes.binomial_mode(codes.gate_probability(lam), emo.m.L0)
    for p, row, n in zip(out["predictions"], probs, L_hat, strict=True):
        assert list(p["probabilities"]) == labels
        np.testing.assert_allclose(list(p["probabilities"].values()), row, rtol=1e-6)
        assert p["labels"] == [lb for lb, q, t in zip(labels, row, thresholds, strict=True) if q >= t]
        assert p["L_hat"] == n


def test_v1_models_describes_each_loaded_model(api: TestClient, kpi: Direct, emo: Direct) -> None:
    r = api.get("/v1/models")
    assert r.status_code == 200
    listing = r.json()
    assert listing["default"] == "kpi5g"
    by_name = {m["name"]: m for m in listing["models"]}
    assert sorted(by_name) == ["emotions", "kpi5g"]
    for name, direct in (("kpi5g", kpi), ("emotions", emo)):
        info, m = by_name[name], direct.m
        assert info == api.get(f"/v1/models/{name}").json()
        expected = {"version": m.version, "fingerprint": m.fingerprint, "kind": m.kind, "D": m.D, "K": m.K,
                    "L0": m.L0, "per_slot": m.per_slot, "likelihood": m.likelihood, "labels": m.labels,
                    "thresholds": m.thresholds, "feature_names": m.feature_names,
                    "evaluation": json.loads(json.dumps(m.evaluation)), "default": name == "kpi5g"}
        assert {k: info[k] for k in expected} == expected
        assert info["provider"] == "CPUExecutionProvider"


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_nothing_from_another_host(api: TestClient, page: str) -> None:
    r = api.get(page)
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert re.findall(r"https?://", r.text) == []
    assets = re.findall(r'(?:src|href)="([^"]+)"', r.text)
    assert assets, r.text
    for asset in assets:
        assert api.get(asset).status_code == 200, asset
    schema = api.get("/openapi.json").json()
    assert {"/encode", "/decode", "/predict", "/healthz", "/readyz", "/v1/models", "/metrics"} <= set(schema["paths"])


def test_a_label_is_predicted_iff_its_probability_reaches_its_own_threshold(models_dir: Path, tmp_path: Path,
                                                                            emo: Direct) -> None:
    """Thresholds that differ per label, set from the probabilities of the first vector: for even labels
    exactly that probability (p >= t: predicted), for odd ones the next float above it (not predicted)."""
    shutil.copytree(models_dir / "emotions", tmp_path / "emotions")
    settings = settings_of(models_dir=tmp_path, default_model="emotions", **SESSION_SETTINGS)
    x = {"vectors": emo.vectors(12, seed=4).tolist()}

    def predict() -> list[dict[str, object]]:
        with open_app(settings) as c:
            r = c.post("/predict", json=x)
            assert r.status_code == 200, r.text
            return list(r.json()["predictions"])

    probs = np.array([list(p["probabilities"].values()) for p in predict()])  # (12, K)
    K = probs.shape[1]
    thresholds = [float(p) if k % 2 == 0 else float(np.nextafter(p, 1.0)) for k, p in enumerate(probs[0])]
    assert len(set(thresholds)) == K
    raw = json.loads((tmp_path / "emotions" / "manifest.json").read_text())
    raw["thresholds"] = thresholds
    (tmp_path / "emotions" / "manifest.json").write_text(json.dumps(raw))
    labels = emo.m.labels
    assert labels is not None
    out = predict()
    assert out[0]["labels"] == labels[::2]
    for p, row in zip(out, probs, strict=True):
        assert list(p["probabilities"].values()) == row.tolist()  # the same model gives the same numbers
        assert p["labels"] == [lb for k, lb in enumerate(labels) if row[k] >= thresholds[k]]
