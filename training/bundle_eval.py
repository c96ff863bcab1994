"""Figures of an exported bundle measured the way the service computes them: onnxruntime graphs and the
numpy deterministic code, no torch. These are what a bundle's manifest records under `evaluation`, and
what the test of the committed default model recomputes. A supervised bundle is scored on the labels it
predicts (P(k in code) >= its threshold, as /predict answers)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bundle import codes, formats
from bundle.runtime import open_bundle


def rmse_per_kpi(sq_err: np.ndarray, kpis: Sequence[str]) -> dict[str, float]:
    """RMSE per KPI from squared errors (N, window * n_kpi) of time-major windows."""
    per = sq_err.reshape(len(sq_err), -1, len(kpis))  # (N, window, n_kpi)
    return {k: float(np.sqrt(per[:, :, i].mean())) for i, k in enumerate(kpis)}


def f1_scores(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Micro F1, macro F1 as the mean of per-label F1 (scikit-learn's), and macro F1 as the harmonic
    mean of macro precision and macro recall (the sparsemax paper's definition)."""
    y, pred = y.astype(bool), pred.astype(bool)
    tp = (y & pred).sum(0).astype(float)
    fp = (~y & pred).sum(0).astype(float)
    fn = (y & ~pred).sum(0).astype(float)
    micro = 2 * tp.sum() / max(2 * tp.sum() + fp.sum() + fn.sum(), 1e-12)
    denom = 2 * tp + fp + fn
    per_label = np.where(denom > 0, 2 * tp / np.maximum(denom, 1e-12), 0.0)
    prec = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1e-12), 0.0).mean()
    rec = np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1e-12), 0.0).mean()
    harmonic = 2 * prec * rec / (prec + rec) if prec + rec > 0 else 0.0
    return {"micro_f1": float(micro), "macro_f1": float(per_label.mean()), "macro_f1_harmonic": float(harmonic)}


def bundle_evaluation(bundle_dir: Path, x_raw: np.ndarray, kpis: tuple[str, ...] | None = None,
                      y: np.ndarray | None = None) -> dict[str, Any]:
    """Reconstruction error in original units and the real size of the codes on rows x_raw (N, D); with
    the rows' label sets y (N, K), a supervised bundle's F1 as well."""
    rt = open_bundle(bundle_dir)
    m = rt.manifest
    x = np.ascontiguousarray(x_raw, dtype=np.float32)
    L_hat, counts = rt.encode(x)
    nnz = (counts > 0).sum(1)
    code_bytes = np.array([codes.code_size(int(n), m.K) for n in nnz])
    raw_bytes = 4 * m.D
    sizes = {fmt: float(np.mean([len(b) for b in formats.pack(fmt, counts, m.code_space, m.entropy)]))
             for fmt in m.formats}
    out: dict[str, Any] = {
        "rows": len(x),
        "mean_L_hat": float(L_hat.mean()),
        "mean_nnz": float(nnz.mean()),
        "mean_code_bytes": float(code_bytes.mean()),
        "bytes_per_format": sizes,  # the mean length of one code's message as /encode sends it, per format
        "code_bits": m.code_space.bits,  # log2 of the number of codes the model can emit
        "raw_float32_bytes": raw_bytes,
        "compression_ratio": float(raw_bytes / min(sizes.values())),
    }
    if m.entropy is not None:  # the static model's information per code: what the range format approaches
        out["entropy_bits"] = float(m.entropy.bits(m.code_space, counts).mean())
    if rt.has_decoder:
        recon = rt.decode(counts.astype(np.float32)).astype(np.float64)
        err = (recon - x) ** 2
        out["rmse"] = float(np.sqrt(err.mean()))
        if m.standardization is not None:
            std = np.asarray(m.standardization.std)
            out["nrmse"] = float(np.sqrt((err / std**2).mean()))
        if kpis is not None:
            out["rmse_per_kpi"] = rmse_per_kpi(err, kpis)
    if y is not None and m.thresholds is not None:
        prob, _ = rt.predict(x)
        out.update(f1_scores(y, prob >= np.asarray(m.thresholds)))
    return out
