"""The committed default bundle models/kpi5g: its files match their fingerprint, it stays small, and the
figures its manifest records are what a fresh evaluation of the held-out traces gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from bundle.manifest import load_manifest
from training.bundle_eval import bundle_evaluation
from training.config import saved_config
from training.tasks import load_task

BUNDLE = Path(__file__).resolve().parents[1] / "models" / "kpi5g"


def test_committed_files_match_the_fingerprint_and_stay_small() -> None:
    m = load_manifest(BUNDLE)  # verifies every graph's SHA-256 and the fingerprint
    assert m.name == "kpi5g" and m.likelihood == "gaussian" and m.D == 80
    assert sum(p.stat().st_size for p in BUNDLE.iterdir()) < 5 * 1024 * 1024
    assert {p.name for p in BUNDLE.iterdir()} == {"manifest.json", *(g.file for g in m.graphs.present().values())}


def test_recorded_figures_match_a_fresh_evaluation() -> None:
    m = load_manifest(BUNDLE)
    cfg = saved_config(m.training["config"])
    task = load_task(cfg.data, cfg.train.seed)
    fresh = bundle_evaluation(BUNDLE, task.test, task.kpis)
    recorded = m.evaluation
    assert recorded["rows"] == fresh["rows"] == len(task.test)
    for key in ("compression_ratio", "mean_code_bytes", "nrmse", "rmse", "mean_nnz", "mean_L_hat"):
        assert fresh[key] == pytest.approx(recorded[key], rel=1e-6), key
    assert fresh["rmse_per_kpi"] == pytest.approx(recorded["rmse_per_kpi"], rel=1e-6)
