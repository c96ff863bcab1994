"""The committed bundles as `make serve` serves them (models/): the KPI default (gate "on": every code is
M bytes in the enum format) and Table I's best MNIST SDLGM (gate "slot"), each through /encode and
/decode in the in-process app with its lifespan (the bundles really loaded and verified); the docs' quotes
of the MNIST bundle against a fresh encoding of the test set."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import open_app, settings_of
from fastapi.testclient import TestClient

from bundle.manifest import load_manifest
from bundle.runtime import open_bundle
from training import datasets

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models"


@pytest.fixture(scope="module")
def api() -> Iterator[TestClient]:
    with open_app(settings_of(models_dir=MODELS, provider="cpu", default_model="kpi5g")) as c:
        yield c


def round_trip(api: TestClient, model: str, vectors: list[list[float]], fmt: str) -> tuple[list[dict], np.ndarray]:
    info = api.get(f"/v1/models/{model}").json()
    enc = api.post(f"/encode?model={model}", json={"vectors": vectors, "format": fmt})
    assert enc.status_code == 200, enc.text
    codes = enc.json()["codes"]
    dec = api.post(f"/decode?model={model}", json={"fingerprint": info["fingerprint"], "format": fmt,
                                                   "codes": [{"binary": c["binary"]} for c in codes]})
    assert dec.status_code == 200, dec.text
    return codes, np.asarray(dec.json()["reconstructions"])


def test_the_kpi_default_sends_four_bytes_and_decodes_them(api: TestClient) -> None:
    m = load_manifest(MODELS / "kpi5g")
    info = api.get("/v1/models/kpi5g").json()
    assert (info["gate"], info["L0"], info["K"]) == ("on", m.L0, m.K) and m.code_space.enum_bytes == m.L0
    window = json.loads((REPO / "docs" / "examples" / "window.json").read_text())["vector"]
    codes, x_hat = round_trip(api, "kpi5g", [window], "enum")
    assert [c["size_bytes"] for c in codes] == [m.L0] and len(base64.b64decode(codes[0]["binary"])) == m.L0
    assert codes[0]["nnz"] == m.L0  # one category per slot, every slot on
    sparse = api.post("/decode", json={"fingerprint": m.fingerprint,
                                       "codes": [{"indices": codes[0]["indices"], "counts": codes[0]["counts"]}]})
    assert np.array_equal(np.asarray(sparse.json()["reconstructions"]), x_hat)
    std = np.asarray(m.standardization.std) if m.standardization else np.ones(m.D)
    err = np.sqrt(np.mean(((x_hat[0] - np.asarray(window)) / std) ** 2))
    assert err < 1.0  # closer than the training mean (NRMSE 1) on this held-out window


def test_the_mnist_bundle_encodes_and_decodes_digits(api: TestClient) -> None:
    m = load_manifest(MODELS / "mnist")
    assert m.gate == "slot" and m.likelihood == "bernoulli" and m.D == 784
    x = datasets.load_binarized_mnist("test", datasets.data_dir())
    digits = x[np.linspace(0, len(x) - 1, 8).round().astype(int)]  # evenly spaced: the file is grouped by digit
    for fmt in ("enum", "range"):
        codes, p = round_trip(api, "mnist", digits.tolist(), fmt)
        if fmt == "enum":
            assert {c["size_bytes"] for c in codes} == {m.code_space.enum_bytes}
        assert p.shape == (8, 784) and ((p >= 0) & (p <= 1)).all()  # float32 sigmoids saturate at the edges
        q = np.clip(p, 1e-6, 1 - 1e-6)
        nll = -(digits * np.log(q) + (1 - digits) * np.log(1 - q)).sum(1)
        assert (nll < 784 * np.log(2) / 2).all()  # the code carries the digit: far better than p = 1/2


def test_the_docs_quote_the_mnist_bundle_as_it_encodes_the_test_set() -> None:
    m = load_manifest(MODELS / "mnist")
    x = datasets.load_binarized_mnist("test", datasets.data_dir()).astype(np.float32)
    L, counts = open_bundle(MODELS / "mnist").encode(np.ascontiguousarray(x))
    assert float(L.mean()) == pytest.approx(m.evaluation["mean_L_hat"])
    share_on = (counts.reshape(len(x), m.L0, -1).sum(2) > 0).mean(0)
    used, always = int((share_on > 0).sum()), int((share_on == 1).sum())
    text = (REPO / "docs" / "results.md").read_text()
    doc = text[text.index("The MNIST model for Figures 3 and 4"):].split("\n\n", 1)[0]
    assert f"`models/mnist` {m.version}" in doc
    assert f"uses {used} of the {m.L0} slots" in doc
    assert f"{m.L0 - used} slots are never on and {always} always on" in doc
    assert f"L_hat stays between {L.min()} and {L.max()} (mean {L.mean():.1f})" in doc
    assert f"`models/mnist` ({m.version})" in (REPO / "README.md").read_text()
