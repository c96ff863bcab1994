"""Code quality where operators look: the bytes each code takes on the wire, and, for a sampled share of
/encode requests (SDLGM_QUALITY_SAMPLE_RATE), the error of the round trip decode(encode(x)) against x.

The round-trip error of a vector is its normalized RMSE, sqrt(mean(((x_hat - x) / std)^2)) over the
features with the manifest's standardization std (1 for bundles without one). Over many vectors,
sqrt(mean of their squared NRMSE) is the figure the KPI study and the bundle's evaluation report (its
`nrmse`, or its `rmse` for a bundle without standardization: the same with std 1), so a drift between the
two shows a change in the traffic (docker/alerts.yml).
"""

from __future__ import annotations

import random

import numpy as np

from bundle import codes
from bundle.manifest import Manifest
from bundle.runtime import F32, ModelRuntime


class QualitySampler:
    """Which requests get their round trip measured: each with probability `rate` (0 never, 1 always)."""

    def __init__(self, rate: float, seed: int | None = None) -> None:
        self.rate = rate
        self._rng = random.Random(seed)

    def sampled(self) -> bool:
        return self.rate > 0 and (self.rate >= 1 or self._rng.random() < self.rate)


def roundtrip_nrmse(model: ModelRuntime, x: F32, counts: codes.IntArray) -> np.ndarray:
    """Per vector: the normalized RMSE of the decoded codes against the raw vectors x (B, D); (B,)."""
    st = model.manifest.standardization
    std = np.asarray(st.std, dtype=np.float64) if st is not None else np.ones(x.shape[1])
    x_hat = model.decode(counts.astype(np.float32)).astype(np.float64)
    return np.asarray(np.sqrt((((x_hat - x) / std) ** 2).mean(axis=1)))


def reference_nrmse(manifest: Manifest) -> float | None:
    """The bundle's own evaluation figure in roundtrip_nrmse's definition; None when it has none."""
    key = "nrmse" if manifest.standardization is not None else "rmse"
    value = manifest.evaluation.get(key)
    return float(value) if isinstance(value, int | float) else None
