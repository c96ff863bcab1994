"""/encode and /decode in every code format (bundle.formats): a code sent in v1, enum or range decodes to
the same reconstruction, each format's size is what the format says, the formats a bundle serves are
listed in /v1/models, a format a bundle lacks is a 422, and corrupt messages are a 400."""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from bundle.formats import EntropyModel
from bundle.manifest import MANIFEST_FILE, fingerprint_of, load_manifest, write_manifest
from service.app import create_app
from service.settings import Settings


@pytest.fixture(scope="module")
def client(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The session's bundles (export fits kpi5g's entropy model on its training codes), plus `kpi5g-range`:
    kpi5g with another entropy model, and `kpi5g-plain`: kpi5g without one (so no range format)."""
    root = tmp_path_factory.mktemp("formats")
    shutil.copytree(models_dir, root, dirs_exist_ok=True)
    src = load_manifest(root / "kpi5g")
    ranged = root / "kpi5g-range"
    shutil.copytree(root / "kpi5g", ranged)
    rng = np.random.default_rng(0)
    train = np.zeros((500, src.K), dtype=np.int64)
    for row in train:
        for k in rng.integers(0, 6, size=rng.integers(0, src.L0 + 1)):
            row[k] += 1
    table = EntropyModel.fit(src.code_space, train).probabilities.tolist()
    write_manifest(ranged, src.model_copy(update={"name": "kpi5g-range", "entropy_model": table,
                                                  "fingerprint": fingerprint_of(src.graphs, table)}))
    plain = root / "kpi5g-plain"
    shutil.copytree(root / "kpi5g", plain)
    write_manifest(plain, src.model_copy(update={"name": "kpi5g-plain", "entropy_model": None,
                                                 "fingerprint": fingerprint_of(src.graphs, None)}))
    with TestClient(create_app(Settings(models_dir=root, provider="cpu"))) as c:
        yield c


def vectors(manifest_path: Path, n: int) -> list[list[float]]:
    st = json.loads(manifest_path.read_text())["standardization"]
    rng = np.random.default_rng(3)
    return (np.asarray(st["mean"]) + rng.normal(size=(n, len(st["mean"]))) * np.asarray(st["std"])).tolist()


@pytest.mark.parametrize("model", ["kpi5g", "kpi5g-range", "kpi5g-plain"])
def test_every_format_round_trips_to_the_same_reconstruction(client: TestClient, models_dir: Path,
                                                               model: str) -> None:
    info = client.get(f"/v1/models/{model}").json()
    assert info["formats"] == (["v1", "enum"] if model == "kpi5g-plain" else ["v1", "enum", "range"])
    x = vectors(models_dir / "kpi5g" / MANIFEST_FILE, 16)
    recon = {}
    for fmt in info["formats"]:
        enc = client.post(f"/encode?model={model}", json={"vectors": x, "format": fmt})
        assert enc.status_code == 200, enc.text
        codes = enc.json()["codes"]
        for c in codes:
            assert len(base64.b64decode(c["binary"])) == c["size_bytes"]
            if fmt == "enum":
                assert c["size_bytes"] == 3  # ceil(log2 C(64 + 4, 4)) = 20 bits
            if fmt == "range":
                assert c["size_bytes"] % 4 == 0
        dec = client.post(f"/decode?model={model}", json={"fingerprint": info["fingerprint"], "format": fmt,
                                                         "codes": [{"binary": c["binary"]} for c in codes]})
        assert dec.status_code == 200, dec.text
        recon[fmt] = dec.json()["reconstructions"]
        sparse = [{"indices": c["indices"], "counts": c["counts"]} for c in codes]
        same = client.post(f"/decode?model={model}", json={"fingerprint": info["fingerprint"], "codes": sparse})
        assert same.json()["reconstructions"] == recon[fmt]
    assert all(r == recon["v1"] for r in recon.values())


def test_a_format_the_model_lacks_is_a_422(client: TestClient) -> None:
    r = client.post("/encode?model=kpi5g-plain", json={"vector": [0.0] * 80, "format": "range"})
    assert r.status_code == 422
    assert r.json()["kind"] == "unsupported"
    assert "serves v1, enum" in r.json()["error"]
    fp = client.get("/v1/models/kpi5g-plain").json()["fingerprint"]
    r = client.post("/decode?model=kpi5g-plain", json={"fingerprint": fp, "format": "range",
                                                       "codes": [{"binary": "AAAAAA=="}]})
    assert (r.status_code, r.json()["kind"]) == (422, "unsupported")


def test_an_unknown_format_is_a_400(client: TestClient) -> None:
    r = client.post("/encode", json={"vector": [0.0] * 80, "format": "zip"})
    assert (r.status_code, r.json()["kind"]) == (400, "invalid_input")


@pytest.mark.parametrize(("model", "fmt", "blob", "why"), [
    ("kpi5g", "enum", b"\x00\x00", "an enum code of this model is 3 bytes, not 2"),
    ("kpi5g", "enum", b"\xff\xff\xff", "outside the model's 814385 codes"),
    ("kpi5g-range", "range", b"\x01\x02\x03", "whole number of 4-byte words"),
    ("kpi5g-range", "range", b"\x00\x00\x00\x00", "does not decode"),
])
def test_corrupt_messages_are_a_400_naming_the_fault(client: TestClient, model: str, fmt: str, blob: bytes,
                                                     why: str) -> None:
    fp = client.get(f"/v1/models/{model}").json()["fingerprint"]
    r = client.post(f"/decode?model={model}", json={"fingerprint": fp, "format": fmt,
                                                   "codes": [{"binary": base64.b64encode(blob).decode()}]})
    assert r.status_code == 400, r.text
    assert r.json()["kind"] == "invalid_input"
    assert why in r.json()["error"]
