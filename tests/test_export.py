"""Export parity: onnxruntime against torch within 1e-5 + 1e-6 max |torch| and the identical deterministic
code, on random inputs and dynamic batch sizes; the manifest and the checksums that guard a bundle."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from bundle import codes
from bundle.manifest import BundleError, load_manifest
from model import codes as tcodes
from model.dis import DisConfig, SDLGMDis
from model.sdlgm import SDLGM, SDLGMConfig
from training.export import DecoderGraph, ExportError, beyond_parity, check_parity, export_bundle


def _rows(model: SDLGM | SDLGMDis, n: int = 20) -> np.ndarray:
    """Raw rows around the model's standardization, for the bundle's evaluation."""
    rng = np.random.default_rng(1)
    return (model.x_mean.numpy() + rng.normal(size=(n, model.cfg.D)) * model.x_std.numpy()).astype(np.float32)


def _gaussian_model(per_slot: bool = False) -> SDLGM:
    torch.manual_seed(0)
    m = SDLGM(SDLGMConfig(D=12, K=40, L0=6, encoder=(32,), sparsity=(16,), decoder=(32,),
                          likelihood="gaussian", per_slot=per_slot))
    m.x_mean.copy_(torch.linspace(-100, 5000, 12))
    m.x_std.copy_(torch.linspace(0.5, 3000, 12))
    return m.eval()


@pytest.mark.parametrize("per_slot", [False, True])
def test_onnx_matches_torch_and_gives_the_identical_code(tmp_path: Path, per_slot: bool) -> None:
    model = _gaussian_model(per_slot)
    names = [f"f{i}" for i in range(12)]
    manifest = export_bundle(model, tmp_path, "tiny", "1", names, _rows(model))
    assert load_manifest(tmp_path) == manifest
    sess = {r: ort.InferenceSession(str(tmp_path / g.file)) for r, g in manifest.graphs.present().items()}
    rng = np.random.default_rng(0)
    for B in (1, 7, 300):
        x = (model.x_mean.numpy() + rng.normal(size=(B, 12)) * model.x_std.numpy()).astype(np.float32)
        with torch.no_grad():
            xs = model.standardize(torch.from_numpy(x))
            pi_t, lam_t = model.pi_logits(xs).numpy(), model.lambda_logits(xs).numpy()
        pi_o = sess["encoder"].run(None, {"x": x})[0]
        lam_o = sess["sparsity"].run(None, {"x": x})[0]
        np.testing.assert_allclose(pi_o, pi_t, atol=1e-5)
        np.testing.assert_allclose(lam_o, lam_t, atol=1e-5)
        L_o, c_o = codes.deterministic_code(pi_o, lam_o, 6)
        L_t, c_t = tcodes.deterministic_code(torch.from_numpy(pi_t), torch.from_numpy(lam_t), 6)
        assert np.array_equal(L_o, L_t.numpy()) and np.array_equal(c_o, c_t.numpy())
        with torch.no_grad():
            ref = DecoderGraph(model)(torch.from_numpy(c_o.astype(np.float32))).numpy()
        got = sess["decoder"].run(None, {"z": c_o.astype(np.float32)})[0]
        np.testing.assert_allclose((got - ref) / model.x_std.numpy(), 0, atol=1e-5)


def test_decoder_gives_original_units(tmp_path: Path) -> None:
    model = _gaussian_model()
    manifest = export_bundle(model, tmp_path, "tiny", "1", [f"f{i}" for i in range(12)], _rows(model))
    sess = ort.InferenceSession(str(tmp_path / manifest.graphs.decoder.file))  # type: ignore[union-attr]
    z = np.zeros((1, 40), np.float32)
    with torch.no_grad():
        standardized_mean = model.decoder(torch.from_numpy(z)).numpy()
    expected = standardized_mean * model.x_std.numpy() + model.x_mean.numpy()
    np.testing.assert_allclose(sess.run(None, {"z": z})[0], expected, rtol=1e-5)
    assert manifest.standardization is not None and manifest.decoder_scale is not None
    assert manifest.standardization.std == pytest.approx(model.x_std.tolist())


def test_dis_bundle_has_no_decoder_and_carries_labels(tmp_path: Path) -> None:
    model = SDLGMDis(DisConfig(D=5, K=3, L0=2, encoder=(8,), sparsity=(8,)))
    manifest = export_bundle(model, tmp_path, "dis", "1", list("abcde"), _rows(model), labels=["x", "y", "z"],
                             thresholds=[0.3] * 3)
    assert manifest.graphs.decoder is None and manifest.kind == "sdlgm-dis"
    assert sorted(p.name.split("-")[0] for p in tmp_path.glob("*.onnx")) == ["encoder", "sparsity"]


def test_tampered_graph_or_manifest_is_refused(tmp_path: Path) -> None:
    model = _gaussian_model()
    export_bundle(model, tmp_path, "tiny", "1", [f"f{i}" for i in range(12)], _rows(model))
    enc = next(tmp_path.glob("encoder-*.onnx"))
    data = bytearray(enc.read_bytes())
    data[-10] ^= 0xFF
    enc.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="encoder graph .* has SHA-256"):
        load_manifest(tmp_path)
    data[-10] ^= 0xFF
    enc.write_bytes(bytes(data))
    raw = json.loads((tmp_path / "manifest.json").read_text())
    raw["fingerprint"] = "0" * 64
    (tmp_path / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(BundleError, match="fingerprint does not match"):
        load_manifest(tmp_path)
    raw = json.loads((tmp_path / "manifest.json").read_text())
    raw["feature_names"] = ["only-one"]
    (tmp_path / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(BundleError, match="feature_names"):
        load_manifest(tmp_path)
    enc.unlink()
    with pytest.raises(BundleError):
        load_manifest(tmp_path)


@pytest.mark.parametrize("role", ["encoder", "decoder"])
def test_parity_check_refuses_graphs_that_differ_from_the_model(tmp_path: Path, role: str) -> None:
    model = _gaussian_model()
    manifest = export_bundle(model, tmp_path, "tiny", "1", [f"f{i}" for i in range(12)], _rows(model))
    x = np.repeat(model.x_mean.numpy()[None], 4, 0)
    assert max(check_parity(model, tmp_path, manifest, x).values()) <= 1e-5  # as exported: it passes
    net = model.encoder if role == "encoder" else model.decoder
    with torch.no_grad():
        net[-1].bias.add_(0.01)  # the torch model drifts from the exported graphs
        beyond = re.escape(f"onnxruntime differs from torch beyond 1e-05 + 1e-06 max |torch|: {{'{role}'")
        with pytest.raises(ExportError, match=beyond):
            check_parity(model, tmp_path, manifest, x)


# (torch outputs, onnxruntime's differences from them, scale, beyond parity): 1e-5 + 1e-6 of the largest
PARITY_CASES = [
    ([0.5, 0.1], [9e-6, 0.0], 1.0, False),
    ([0.5, 0.1], [0.0, 1.2e-5], 1.0, True),
    ([123.4, 69.3, 2.97], [0.0, 2.29e-5, 1.38e-5], 1.0, False),  # the 100k-iteration MNIST encoder's worst
    ([123.4, 2.97], [0.0, 1.4e-4], 1.0, True),
    ([-123.4, 0.6], [1.3e-4, 0.0], 1.0, False),
    ([5e4, 1e3], [0.05, 0.0], 5e4, False),  # a bitrate KPI with std 5e4: compared in standardized units
    ([5e4, 1e3], [0.0, 1.0], 5e4, True),
]


@pytest.mark.parametrize(("ref", "diff", "scale", "beyond"), PARITY_CASES)
def test_parity_allows_float32_rounding_that_grows_with_the_outputs(ref: list[float], diff: list[float],
                                                                    scale: float, beyond: bool) -> None:
    t, d = np.array([ref]), np.array([diff])
    assert beyond_parity(t + d, t, scale) is beyond
    assert beyond_parity(t - d, t, scale) is beyond


def test_a_manifest_whose_gate_misfits_its_graphs_or_code_is_refused(tmp_path: Path) -> None:
    from bundle.manifest import Manifest

    model = _gaussian_model()
    export_bundle(model, tmp_path, "tiny", "1", [f"f{i}" for i in range(12)], _rows(model))
    raw = json.loads((tmp_path / "manifest.json").read_text())
    Manifest.model_validate(raw)
    cases = [
        ({"gate": "slot"}, "sparsity graph exactly when its gate is shared"),
        ({"gate": "on", "lambda0": 1.0}, "sparsity graph exactly"),
        ({"lambda0": 1.0}, "lambda0 is 1 exactly when"),
        ({"gate": "slot", "graphs": {**raw["graphs"], "sparsity": None}}, "partitions must be L0"),
        ({"gate": "on", "graphs": {**raw["graphs"], "sparsity": None}, "partitions": 6}, "lambda0 is 1 exactly"),
    ]
    for change, why in cases:
        with pytest.raises(ValueError, match=why):
            Manifest.model_validate({**raw, **change})
