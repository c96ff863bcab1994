"""Figures of an exported bundle measured the way the service computes them: onnxruntime graphs and the
numpy deterministic code, no torch. These are what a bundle's manifest records under `evaluation`, and
what the test of the committed default model recomputes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bundle import codes
from bundle.runtime import open_bundle


def rmse_per_kpi(sq_err: np.ndarray, kpis: Sequence[str]) -> dict[str, float]:
    """RMSE per KPI from squared errors (N, window * n_kpi) of time-major windows."""
    per = sq_err.reshape(len(sq_err), -1, len(kpis))  # (N, window, n_kpi)
    return {k: float(np.sqrt(per[:, :, i].mean())) for i, k in enumerate(kpis)}


def bundle_evaluation(bundle_dir: Path, x_raw: np.ndarray, kpis: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Reconstruction error in original units and the real size of the codes on rows x_raw (N, D)."""
    rt = open_bundle(bundle_dir)
    m = rt.manifest
    x = np.ascontiguousarray(x_raw, dtype=np.float32)
    L_hat, counts = rt.encode(x)
    nnz = (counts > 0).sum(1)
    code_bytes = np.array([codes.code_size(int(n), m.K) for n in nnz])
    raw_bytes = 4 * m.D
    out: dict[str, Any] = {
        "rows": len(x),
        "mean_L_hat": float(L_hat.mean()),
        "mean_nnz": float(nnz.mean()),
        "mean_code_bytes": float(code_bytes.mean()),
        "raw_float32_bytes": raw_bytes,
        "compression_ratio": float(raw_bytes / code_bytes.mean()),
    }
    if rt.has_decoder:
        recon = rt.decode(counts.astype(np.float32)).astype(np.float64)
        err = (recon - x) ** 2
        out["rmse"] = float(np.sqrt(err.mean()))
        if m.standardization is not None:
            std = np.asarray(m.standardization.std)
            out["nrmse"] = float(np.sqrt((err / std**2).mean()))
        if kpis is not None:
            out["rmse_per_kpi"] = rmse_per_kpi(err, kpis)
    return out
