"""Export: the three networks to ONNX plus the manifest, the bundle that the service loads.

The graphs take and give original units: the encoder and sparsity net standardize raw vectors inside the
graph, the decoder gives Bernoulli probabilities or the Gaussian mean in original units. Graph files are
named by content hash; the manifest's fingerprint is the SHA-256 over their checksums. Export ends with
a parity check (onnxruntime against torch within 1e-5 + 1e-6 max |torch| and the identical deterministic
code) and refuses to write a manifest for graphs that fail it.

Which graphs a bundle holds is what the model's family declares (`model.family.Family.graphs`). Every
manifest records the model's kind and config, the version it is given, and an evaluation of the bundle
itself on held-out rows (`training.bundle_eval`, the way the service computes); `export_trained` adds
the run config and step of a trained run.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from bundle import codes as np_codes
from bundle.formats import EntropyModel
from bundle.manifest import (
    Graph,
    Graphs,
    Manifest,
    Standardization,
    fingerprint_of,
    sha256_file,
    write_manifest,
)
from bundle.runtime import open_bundle
from model import codes as torch_codes
from model import registry
from model.family import Role, SparseCoder, SparseModel
from training.bundle_eval import bundle_evaluation
from training.config import RunConfig
from training.evaluate import choose_threshold
from training.tasks import Task
from training.temperatures import Temperatures

OPSET = 17
PARITY_ATOL = 1e-5
PARITY_RTOL = 1e-6  # of the graph's largest |output|: float32 rounding grows with the terms a layer sums


class ExportError(RuntimeError):
    pass


class Reconstructs(SparseCoder, Protocol):
    """What the decoder graph runs: counts (B, K) -> reconstructions in original units."""

    cfg: Any

    def reconstruct(self, z: torch.Tensor) -> torch.Tensor: ...

    def decoder_scale(self) -> list[float] | None: ...


class _Standardize(nn.Module):
    model: SparseCoder

    def __init__(self, model: SparseCoder) -> None:
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
    model: Reconstructs

    def __init__(self, model: Reconstructs) -> None:
        super().__init__()
        self.model = model

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.reconstruct(z)


def _export(module: nn.Module, example: torch.Tensor, in_name: str, out_name: str, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), str(path), input_names=[in_name], output_names=[out_name],
                          dynamic_axes={in_name: {0: "batch"}, out_name: {0: "batch"}},
                          opset_version=OPSET, dynamo=False)


def _graph(role: Role, coder: SparseCoder, K: int) -> tuple[nn.Module, torch.Tensor, str, str]:
    """The module of one role, an example input, and its input and output names."""
    x_ex = coder.x_mean.detach().clone().unsqueeze(0).repeat(2, 1)
    if role == "encoder":
        return EncoderGraph(coder), x_ex, "x", "pi_logits"
    if role == "sparsity":
        return SparsityGraph(coder), x_ex, "x", "lambda_logits"
    return DecoderGraph(cast(Reconstructs, coder)), torch.zeros(2, K), "z", "x_hat"


def export_bundle(model: SparseModel, out_dir: Path, name: str, version: str, feature_names: list[str],
                  eval_x: np.ndarray, *, eval_y: np.ndarray | None = None, kpis: tuple[str, ...] | None = None,
                  training: dict[str, Any] | None = None, labels: list[str] | None = None,
                  thresholds: list[float] | None = None, probe: np.ndarray | None = None,
                  code_rows: np.ndarray | None = None) -> Manifest:
    """Write <out_dir>/<role>-<hash>.onnx for the family's graphs and manifest.json; returns the manifest.
    The manifest records the model's kind and config with `training`, and the bundle's evaluation on
    the raw rows eval_x (with their label sets eval_y for a supervised bundle). With code_rows (raw
    training rows), the range format's static model is fitted on their codes as the bundle computes them."""
    family = registry.family_of(model)
    coder = model.deployed()
    if not family.graphs or coder is None:
        raise ExportError(f"model kind {family.kind} is a baseline and has no deployable bundle")
    model.eval()
    cfg = cast(Reconstructs, coder).cfg
    supervised = family.bundle_kind == "sdlgm-dis"
    likelihood = "labels" if supervised else cfg.likelihood
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        graphs: dict[str, Graph] = {}
        gate = getattr(cfg, "gate", "shared")
        for role in family.graphs:
            if role == "sparsity" and gate != "shared":
                continue  # the slots gate themselves
            module, example, i, o = _graph(role, coder, cfg.K)
            path = tmp / f"{role}.onnx"
            _export(module, example, i, o, path)
            digest = sha256_file(path)
            graphs[role] = Graph(file=f"{role}-{digest[:12]}.onnx", sha256=digest, input=i, outputs=[o])
            path.rename(tmp / graphs[role].file)
        g = Graphs(**graphs)
        manifest = Manifest(
            name=name, version=version, fingerprint=fingerprint_of(g), kind=family.bundle_kind,
            D=cfg.D, K=cfg.K, L0=cfg.L0, lambda0=cfg.lambda0, per_slot=bool(getattr(cfg, "per_slot", False)),
            gate=gate, partitions=cfg.L0 if gate != "shared" else 1,
            likelihood=likelihood, feature_names=feature_names,
            standardization=Standardization(mean=coder.x_mean.tolist(), std=coder.x_std.tolist())
            if likelihood != "bernoulli" else None,
            decoder_scale=cast(Reconstructs, coder).decoder_scale() if g.decoder is not None else None,
            labels=labels, thresholds=thresholds, graphs=g,
            training={"model": {"kind": family.kind, "config": family.saved_config(model)}, **(training or {})},
        )
        probe_x = probe if probe is not None else np.repeat(coder.x_mean.numpy()[None], 8, 0)
        check_parity(model, tmp, manifest, probe_x.astype(np.float32))
        write_manifest(tmp, manifest)
        if code_rows is not None:
            _, counts = open_bundle(tmp).encode(np.ascontiguousarray(code_rows, dtype=np.float32))
            probs = EntropyModel.fit(manifest.code_space, counts).probabilities.tolist()
            manifest = manifest.model_copy(update={"entropy_model": probs, "fingerprint": fingerprint_of(g, probs)})
            manifest = Manifest.model_validate(manifest.model_dump())
            write_manifest(tmp, manifest)
        evaluation = {"split": "test", **bundle_evaluation(tmp, eval_x, kpis, eval_y)}
        manifest = manifest.model_copy(update={"evaluation": evaluation})
        out_dir.mkdir(parents=True, exist_ok=True)
        for old in out_dir.glob("*.onnx"):
            old.unlink()
        for gr in g.present().values():
            shutil.copyfile(tmp / gr.file, out_dir / gr.file)
        write_manifest(out_dir, manifest)
    return manifest


def export_trained(cfg: RunConfig, model: SparseModel, temps: Temperatures, step: int, task: Task, out_dir: Path,
                   name: str | None = None, version: str | None = None) -> Manifest:
    """A trained run's bundle (name and version from its config unless given), evaluated on the task's test
    split; a label model's threshold is the grid's best on validation, the same for every label."""
    family = registry.family_of(model)
    labels = thresholds = None
    if family.targets == "labels":
        t = choose_threshold(family.of(model), task, cfg.train.threshold_grid)
        labels, thresholds = task.label_names, [t] * len(task.label_names or [])
    training = {"config": cfg.model_dump(mode="json"), "step": step, **temps.current(step)}
    return export_bundle(model, out_dir, name or cfg.name, version or cfg.version, task.feature_names, task.test,
                         eval_y=task.y_test, kpis=task.kpis, training=training, labels=labels,
                         thresholds=thresholds, probe=task.test[:64],
                         code_rows=task.train if family.bundle_kind == "sdlgm" else None)


def beyond_parity(got: np.ndarray, ref: np.ndarray, scale: np.ndarray | float = 1.0) -> bool:
    """Whether some element of got (onnxruntime) differs from ref (torch) by more than 1e-5 + 1e-6 max |ref|,
    both divided by scale (the decoder's in standardized units). The bound follows the largest output, not
    each element's own: a logit near 0 that sums terms of 100 carries their rounding (the 100k-iteration
    MNIST encoder, logits up to 123, differs by 1.4e-5 at a logit of 3 and 2.3e-5 at one of 69)."""
    err, ref_s = np.abs(got - ref) / scale, np.abs(ref) / scale
    return bool(err.max(initial=0.0) > PARITY_ATOL + PARITY_RTOL * ref_s.max(initial=0.0))


@torch.no_grad()
def check_parity(model: SparseModel, bundle_dir: Path, manifest: Manifest, x: np.ndarray) -> dict[str, float]:
    """onnxruntime against torch on x: max abs differences (the decoder's in standardized units); raises ExportError
    where an output differs beyond 1e-5 + 1e-6 max |torch| (`beyond_parity`) or a code differs."""
    coder = model.deployed()
    assert coder is not None
    sess = {role: ort.InferenceSession(str(bundle_dir / g.file), providers=["CPUExecutionProvider"])
            for role, g in manifest.graphs.present().items()}
    xt = torch.from_numpy(x)
    xs = (xt - coder.x_mean) / coder.x_std
    pi_t = coder.pi_logits(xs)
    pi_o = sess["encoder"].run(None, {"x": x})[0]
    pairs: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray | float]] = {"encoder": (pi_o, pi_t.numpy(), 1.0)}
    if manifest.gate == "shared":
        lam_t = coder.lambda_logits(xs)
        lam_o = sess["sparsity"].run(None, {"x": x})[0]
        pairs["sparsity"] = (lam_o, lam_t.numpy(), 1.0)
        L_t, counts_t = torch_codes.deterministic_code(pi_t, lam_t, manifest.L0)
        L_o, counts_o = np_codes.deterministic_code(pi_o, lam_o, manifest.L0)
    else:
        counts_t = torch_codes.slot_counts(torch_codes.slot_mode(pi_t), manifest.K // manifest.L0)
        counts_o = manifest.code_space.counts(np_codes.slot_mode(pi_o))
        L_t, L_o = counts_t.sum(1), counts_o.sum(1)
    if "decoder" in sess:
        z = counts_t.float()
        ref = DecoderGraph(cast(Reconstructs, coder))(z).numpy()
        got = sess["decoder"].run(None, {"z": z.numpy()})[0]
        # In standardized units: a KPI with std 5e4 (bitrates) turns float32 noise of 1e-6 into 0.05.
        pairs["decoder"] = (got, ref, coder.x_std.numpy() if manifest.likelihood == "gaussian" else 1.0)
    diffs = {k: float((np.abs(o - t) / sc).max()) for k, (o, t, sc) in pairs.items()}
    bad = {k: diffs[k] for k, (o, t, sc) in pairs.items() if beyond_parity(o, t, sc)}
    if bad:
        raise ExportError(f"onnxruntime differs from torch beyond {PARITY_ATOL} + {PARITY_RTOL} max |torch|: "
                          f"{bad}")
    if not (np.array_equal(L_t.numpy(), L_o) and np.array_equal(counts_t.numpy(), counts_o)):
        raise ExportError("the deterministic code from onnxruntime differs from torch's")
    return diffs
