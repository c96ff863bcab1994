"""The committed default bundle models/kpi5g: its files match their fingerprint, it stays small, the
figures its manifest records are what a fresh evaluation of the held-out traces gives, and the README
quotes those figures."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bundle.manifest import load_manifest
from training.bundle_eval import bundle_evaluation
from training.config import saved_config
from training.tasks import load_task

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "models" / "kpi5g"


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
    for key in ("compression_ratio", "mean_code_bytes", "nrmse", "rmse", "mean_nnz", "mean_L_hat", "entropy_bits"):
        assert fresh[key] == pytest.approx(recorded[key], rel=1e-6), key
    assert fresh["rmse_per_kpi"] == pytest.approx(recorded["rmse_per_kpi"], rel=1e-6)
    assert fresh["bytes_per_format"] == recorded["bytes_per_format"]


def test_the_default_is_a_product_code_of_one_byte_per_slot() -> None:
    m = load_manifest(BUNDLE)
    assert m.gate == "on" and m.K == 256 * m.L0 and m.code_space.enum_bytes == m.L0
    assert m.evaluation["bytes_per_format"]["enum"] == m.L0 and m.entropy_model is not None
    assert m.training["model"]["kind"] == "sdlgm-search"  # type: ignore[index]


def test_the_readme_quotes_the_manifest() -> None:
    m = load_manifest(BUNDLE)
    ev = m.evaluation
    text = (REPO / "README.md").read_text()
    section = text[text.index("## The default model"):].split("\n## ", 1)[0]
    assert f"**{m.L0} bytes**" in section
    assert f"NRMSE **{ev['nrmse']:.3f}**" in section
    assert f"compression ratio {ev['compression_ratio']:.0f}" in section
    for kpi, v in ev["rmse_per_kpi"].items():  # type: ignore[union-attr]
        assert re.search(rf"{re.escape(f'{v:,.1f}')} [^,;]*{kpi}|{kpi} {re.escape(f'{v:,.1f}')}", section), kpi
