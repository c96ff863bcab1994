"""End to end with the real CLI and a real server: train a tiny kpi5g model, export its bundle, serve it,
and round-trip encode -> decode to reconstructions in original units."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np
from conftest import Server, make_bundle


def test_train_export_serve_round_trip(tmp_path: Path, serve: Callable[..., AbstractContextManager[Server]]) -> None:
    bundle = make_bundle("configs/kpi5g.yaml", tmp_path / "run", tmp_path / "models" / "edge", iterations=5)
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
