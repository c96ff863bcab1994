"""Export: the three networks to ONNX plus the manifest, the bundle that the service loads.

The graphs take and give original units: the encoder and sparsity net standardize raw vectors inside the
graph, the decoder gives Bernoulli probabilities or the Gaussian mean in original units. Graph files are
named by content hash; the manifest's fingerprint is the SHA-256 over their checksums. Export ends with
a parity check (onnxruntime against torch within 1e-5 and the identical deterministic code) and refuses
to write a manifest for graphs that fail it.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from bundle import codes as np_codes
from bundle.manifest import (
    Graph,
    Graphs,
    Manifest,
    Standardization,
    fingerprint_of,
    sha256_file,
    write_manifest,
)
from model import codes as torch_codes
from model.dis import SDLGMDis
from model.sdlgm import SDLGM

OPSET = 17
PARITY_ATOL = 1e-5


class ExportError(RuntimeError):
    pass


class _Standardize(nn.Module):
    model: SDLGM | SDLGMDis

    def __init__(self, model: SDLGM | SDLGMDis) -> None:
        super().__init__()
        self.model = model

    def std(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.model.x_mean) / self.model.x_std


class EncoderGraph(_Standardize):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.pi_logits(self.std(x))


class SparsityGraph(_Standardize):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.lambda_logits(self.std(x))


class DecoderGraph(nn.Module):
    model: SDLGM

    def __init__(self, model: SDLGM) -> None:
        super().__init__()
        self.model = model

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.model.decoder(z)
        if self.model.cfg.likelihood == "bernoulli":
            return torch.sigmoid(out)
        return out * self.model.x_std + self.model.x_mean


def _decoder_scale(model: SDLGM | SDLGMDis) -> list[float] | None:
    """The Gaussian decoder's learned scale in original units."""
    if isinstance(model, SDLGM) and model.log_scale is not None:
        return (torch.exp(model.log_scale.detach()) * model.x_std).tolist()
    return None


def _export(module: nn.Module, example: torch.Tensor, in_name: str, out_name: str, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), str(path), input_names=[in_name], output_names=[out_name],
                          dynamic_axes={in_name: {0: "batch"}, out_name: {0: "batch"}},
                          opset_version=OPSET, dynamo=False)


def export_bundle(model: SDLGM | SDLGMDis, out_dir: Path, name: str, version: str, feature_names: list[str],
                  training: dict[str, Any] | None = None,
                  labels: list[str] | None = None, thresholds: list[float] | None = None,
                  probe: np.ndarray | None = None) -> Manifest:
    """Write <out_dir>/{encoder,sparsity,decoder}-<hash>.onnx and manifest.json; returns the manifest."""
    model.eval()
    cfg = model.cfg
    D, K, L0 = cfg.D, cfg.K, cfg.L0
    dis = isinstance(model, SDLGMDis)
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        x_ex = model.x_mean.detach().clone().unsqueeze(0).repeat(2, 1)
        parts: dict[str, tuple[nn.Module, torch.Tensor, str, str]] = {
            "encoder": (EncoderGraph(model), x_ex, "x", "pi_logits"),
            "sparsity": (SparsityGraph(model), x_ex, "x", "lambda_logits"),
        }
        if not dis:
            assert isinstance(model, SDLGM)
            parts["decoder"] = (DecoderGraph(model), torch.zeros(2, K), "z", "x_hat")
        graphs: dict[str, Graph] = {}
        for role, (module, example, i, o) in parts.items():
            path = tmp / f"{role}.onnx"
            _export(module, example, i, o, path)
            digest = sha256_file(path)
            graphs[role] = Graph(file=f"{role}-{digest[:12]}.onnx", sha256=digest, input=i, outputs=[o])
            (tmp / f"{role}.onnx").rename(tmp / graphs[role].file)
        g = Graphs(**graphs)
        likelihood = "labels" if dis else cfg.likelihood  # type: ignore[union-attr]
        gaussian = likelihood == "gaussian"
        manifest = Manifest(
            name=name, version=version, fingerprint=fingerprint_of(g), kind="sdlgm-dis" if dis else "sdlgm",
            D=D, K=K, L0=L0, lambda0=cfg.lambda0, per_slot=bool(getattr(cfg, "per_slot", False)),
            likelihood=likelihood, feature_names=feature_names,
            standardization=Standardization(mean=model.x_mean.tolist(), std=model.x_std.tolist())
            if gaussian or dis else None,
            decoder_scale=_decoder_scale(model),
            labels=labels, thresholds=thresholds, graphs=g,
            training=training or {},
        )
        probe_x = probe if probe is not None else np.repeat(model.x_mean.numpy()[None], 8, 0)
        check_parity(model, tmp, manifest, probe_x.astype(np.float32))
        out_dir.mkdir(parents=True, exist_ok=True)
        for old in out_dir.glob("*.onnx"):
            old.unlink()
        for gr in g.present().values():
            shutil.copyfile(tmp / gr.file, out_dir / gr.file)
        write_manifest(out_dir, manifest)
    return manifest


@torch.no_grad()
def check_parity(model: SDLGM | SDLGMDis, bundle_dir: Path, manifest: Manifest, x: np.ndarray) -> dict[str, float]:
    """onnxruntime against torch on x: max abs differences (the decoder's in standardized units); raises ExportError beyond 1e-5 or a code differs."""
    sess = {role: ort.InferenceSession(str(bundle_dir / g.file), providers=["CPUExecutionProvider"])
            for role, g in manifest.graphs.present().items()}
    xt = torch.from_numpy(x)
    xs = (xt - model.x_mean) / model.x_std
    pi_t, lam_t = model.pi_logits(xs), model.lambda_logits(xs)
    pi_o = sess["encoder"].run(None, {"x": x})[0]
    lam_o = sess["sparsity"].run(None, {"x": x})[0]
    diffs = {"encoder": float(np.abs(pi_o - pi_t.numpy()).max()),
             "sparsity": float(np.abs(lam_o - lam_t.numpy()).max())}
    L_t, counts_t = torch_codes.deterministic_code(pi_t, lam_t, manifest.L0)
    L_o, counts_o = np_codes.deterministic_code(pi_o, lam_o, manifest.L0)
    if "decoder" in sess:
        assert isinstance(model, SDLGM)
        z = counts_t.float()
        ref = DecoderGraph(model)(z).numpy()
        got = sess["decoder"].run(None, {"z": z.numpy()})[0]
        # In standardized units: a KPI with std 5e4 (bitrates) turns float32 noise of 1e-6 into 0.05.
        scale = model.x_std.numpy() if model.cfg.likelihood == "gaussian" else 1.0
        diffs["decoder"] = float((np.abs(got - ref) / scale).max())
    bad = {k: v for k, v in diffs.items() if v > PARITY_ATOL}
    if bad:
        raise ExportError(f"onnxruntime differs from torch beyond {PARITY_ATOL}: {bad}")
    if not (np.array_equal(L_t.numpy(), L_o) and np.array_equal(counts_t.numpy(), counts_o)):
        raise ExportError("the deterministic code from onnxruntime differs from torch's")
    return diffs
