"""Tests for benchmarks/kpi_rd.py and benchmarks/kpi_report.py: the next-window pairs of the downstream
task (no pair spans a gap or two traces, missing values are filled or dropped as in the windows, no trace
on both sides of the split), the report built from fixed rows (each row's label and figures, the
headline comparisons, the candidates chosen on validation, rebuilt from the result file alone), and a
tiny end-to-end run of the command (--quick) that writes the JSON, the plot and the doc."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from training import codecs, codecs_faiss, codecs_fsq, datasets
from training.codecs_sdlgm import BundleCodec, SDLGMCodec, SDLGMLog1pCodec, SearchBundleCodec
from training.datasets import DataError, Trace

REQUIRED = {"method", "label", "role", "message", "params", "bytes_per_vector", "entropy_bits_per_vector", "nrmse",
            "rmse_per_kpi", "downstream_error"}
STUDIED = [codecs.RawFloat32, codecs.Float16, codecs.UniformScalar, codecs.Lossless, codecs.PCAQuant,
           codecs.KMeansVQ, codecs.ProductQuantizer, codecs_faiss.OptimizedPQ, codecs_faiss.ResidualQuantizer,
           codecs_faiss.LocalSearch, codecs_fsq.FSQ, codecs.OMPSparse, codecs.KSparseAE, SDLGMCodec, SDLGMLog1pCodec,
           SearchBundleCodec, BundleCodec]


@pytest.fixture(scope="module")
def kpi_rd() -> ModuleType:
    import kpi_rd

    return kpi_rd


@pytest.fixture(scope="module")
def kpi_report() -> ModuleType:
    import kpi_report

    return kpi_report


@pytest.fixture(scope="module")
def root() -> Path:
    try:
        return datasets.data_dir()
    except DataError as e:
        pytest.skip(f"shared data not available: {e}")


def trace(name: str, seconds: Sequence[int], values: Sequence[Sequence[float]]) -> Trace:
    return Trace(name, np.array(seconds, dtype=np.int64), np.array(values, dtype=np.float64))


def test_pairs_take_the_next_window_of_the_same_piece(kpi_rd: ModuleType) -> None:
    # 2 KPIs, window 2: seconds 0..5 then a 10-s gap (a cut), then 16..19.
    secs = [0, 1, 2, 3, 4, 5, 16, 17, 18, 19]
    vals = [[s, 100 + s] for s in secs]
    pairs = kpi_rd.next_window_pairs([trace("a", secs, vals)], window=2, stride=2, kpi_index=1)
    # piece 1 (0..5): pairs start at 0 and 2; piece 2 (16..19): one pair at 16; none spans the cut.
    assert pairs.x[:, 0].tolist() == [0, 2, 16]
    assert pairs.target.tolist() == [102.5, 104.5, 118.5]  # mean of KPI 1 over the next two seconds
    assert pairs.x.shape == (3, 4) and list(pairs.trace) == ["a"] * 3


def test_pairs_fill_short_gaps_and_drop_long_missing_runs(kpi_rd: ModuleType) -> None:
    nan = float("nan")
    # second 2 skipped by the logger and a '-' at second 4: both filled from the previous second.
    short = trace("s", [0, 1, 3, 4, 5, 6, 7], [[0, 0], [1, 1], [3, 3], [nan, 4], [5, 5], [6, 6], [7, 7]])
    p = kpi_rd.next_window_pairs([short], window=2, stride=2, kpi_index=0, max_gap=5)
    assert p.x.tolist() == [[0, 0, 1, 1], [1, 1, 3, 3], [3, 4, 5, 5]]
    assert p.target.tolist() == [2.0, 4.0, 6.5]
    # a missing run longer than max_gap stays missing: no pair holds it, in the window or the target.
    long = trace("l", list(range(14)), [[nan if 2 <= s <= 8 else s, s] for s in range(14)])
    q = kpi_rd.next_window_pairs([long], window=2, stride=1, kpi_index=0, max_gap=5)
    assert q.x[:, 1].tolist() == [9, 10]  # the only complete 4-s spans are 9..12 and 10..13
    assert q.target.tolist() == [11.5, 12.5]


def test_pairs_never_cross_traces(kpi_rd: ModuleType) -> None:
    a = trace("a", [0, 1, 2], [[1, 0], [2, 0], [3, 0]])  # 3 s: too short for a 2 x 2-s pair on its own
    b = trace("b", [3, 4, 5, 6], [[4, 0], [5, 0], [6, 0], [7, 0]])  # the seconds continue a's, another file
    p = kpi_rd.next_window_pairs([a, b], window=2, stride=1, kpi_index=0)
    assert list(p.trace) == ["b"] and p.x.tolist() == [[4, 0, 5, 0]] and p.target.tolist() == [6.5]
    empty = kpi_rd.next_window_pairs([], window=2, stride=1, kpi_index=0)
    assert len(empty.x) == 0 and len(empty.target) == 0


def test_downstream_pairs_stay_on_their_side_of_the_split(kpi_rd: ModuleType, root: Path) -> None:
    data = kpi_rd.load_data(kpi_rd.load_config(kpi_rd.CONFIG))
    s = data.split
    assert set(data.train_pairs.trace) <= set(s.train_traces)
    assert set(data.test_pairs.trace) <= set(s.test_traces)
    assert not set(s.train_traces) & set(s.test_traces)
    # every test pair's current window is one of the test windows (same grid, stride = window)
    test_rows = {r.tobytes() for r in s.test}
    assert all(r.tobytes() in test_rows for r in data.test_pairs.x)
    assert 0 < data.test_pairs.low.mean() < 1 and 0 < data.train_pairs.low.mean() < 1
    assert set(data.missing_share) >= set(s.kpis)


def test_quick_run_writes_json_plot_and_doc(kpi_rd: ModuleType, root: Path, tmp_path: Path) -> None:
    doc = tmp_path / "doc" / "kpi.md"
    assert kpi_rd.main(["--quick", "--results", str(tmp_path / "results"), "--doc", str(doc)]) == 0
    content = json.loads((tmp_path / "results" / "kpi_rd.json").read_text())
    rows = content["rows"]
    assert content["meta"]["quick"] and content["meta"]["test_rows"] == kpi_rd.QUICK.rows
    methods = {r["method"] for r in rows}
    assert {c.family for c in STUDIED} <= methods
    for r in rows:
        assert set(r) >= REQUIRED, r["method"]
        assert r["bytes_per_vector"] > 0 and r["nrmse"] >= 0 and 0 <= r["downstream_error"] <= 1
        assert set(r["rmse_per_kpi"]) == set(datasets.DEFAULT_KPIS)
    lossless = [r for r in rows if r["method"] == codecs.Lossless.family]
    assert all(r["nrmse"] == 0 for r in lossless)
    assert (tmp_path / "results" / "kpi_rd.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = doc.read_text()
    assert "--quick run" in text and "## The default model's point" in text and "../results/kpi_rd.png" in text


def test_a_rerun_measures_only_the_search_points_and_chooses_among_candidates_on_validation(
        kpi_rd: ModuleType, root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs, first, second = tmp_path / "runs", tmp_path / "first", tmp_path / "second"
    assert kpi_rd.main(["--quick", "--runs", str(runs), "--results", str(first), "--doc", str(first / "kpi.md")]) == 0
    before = json.loads((first / "kpi_rd.json").read_text())["rows"]
    checkpoint = runs / "search-M2" / "checkpoint.pt"
    trained = checkpoint.stat().st_mtime_ns
    (runs / kpi_rd.ROWS_FILE).unlink()  # the cache of rows gone; the trained points stay
    variant = (("model.candidates", 4),)
    monkeypatch.setattr(kpi_rd, "QUICK", replace(kpi_rd.QUICK, search_variants=((2, variant),)))
    assert kpi_rd.main(["--quick", "--runs", str(runs), "--baselines-from", str(first / "kpi_rd.json"),
                        "--results", str(second), "--doc", str(second / "kpi.md")]) == 0
    after = json.loads((second / "kpi_rd.json").read_text())["rows"]
    search = SearchBundleCodec.family
    taken = [r for r in after if r["method"] not in (search, BundleCodec.family)]
    assert all(r.pop("measured_by") == "an earlier run (kpi_rd.json)" for r in taken)  # marked as taken
    assert taken == [r for r in before if r["method"] not in (search, BundleCodec.family)]  # as they were
    assert checkpoint.stat().st_mtime_ns == trained  # the config's own point reused, not trained again
    (point,) = [r for r in after if r["method"] == search]
    chosen = point["chosen_on_valid"]
    assert set(chosen) == {"SDLGM-search M=2 (K=512), the config's recipe", "SDLGM-search M=2 (K=512), candidates 4"}
    assert point["label"] == min(chosen, key=chosen.get) and point["nrmse_valid"] == pytest.approx(min(chosen.values()))
    short = tmp_path / "short.json"
    short.write_text(json.dumps({"meta": {}, "rows": before[1:]}))
    with pytest.raises(ValueError, match="not the same plan"):
        kpi_rd.seed_cache(kpi_rd.QUICK, kpi_rd.load_data(kpi_rd.load_config(kpi_rd.CONFIG), kpi_rd.QUICK.rows),
                          tmp_path / "other", short)


KPIS = list(datasets.DEFAULT_KPIS)


def row(codec: type[codecs.Codec], params: dict[str, Any], nbytes: float, nrmse: float, downstream: float,
        **extra: Any) -> dict[str, Any]:
    """A result row as kpi_rd.measure writes it, with distinct figures to look for."""
    return {"method": codec.family, "label": codec.label(params), "role": codec.role, "message": codec.message,
            "params": params, "bytes_per_vector": nbytes, "entropy_bits_per_vector": 5.5 * nbytes, "nrmse": nrmse,
            "rmse_per_kpi": {k: 10 * nrmse + i for i, k in enumerate(KPIS)}, "nrmse_valid": nrmse + 0.011,
            "negative_bitrate_share": 0.02, "nrmse_bitrates_clipped": nrmse - 0.001, "downstream_error": downstream,
            "downstream_error_from_code": None, "fit_seconds": 3.0, **extra}


ROWS = [
    row(codecs.RawFloat32, {}, 320.0, 0.0, 0.171),
    row(codecs.KMeansVQ, {"bits": 8, "centroids": 256}, 1.0, 0.562, 0.187),
    row(codecs.ProductQuantizer, {"M": 2, "bits": 8}, 2.0, 0.450, 0.159),
    row(codecs.ProductQuantizer, {"M": 4, "bits": 8}, 4.0, 0.366, 0.186),
    row(codecs_faiss.OptimizedPQ, {"M": 2, "bits": 8, "iterations": 10, "train_rows": 20000}, 2.0, 0.449, 0.163),
    row(codecs_faiss.OptimizedPQ, {"M": 4, "bits": 8, "iterations": 10, "train_rows": 20000}, 4.0, 0.331, 0.179),
    row(codecs_faiss.ResidualQuantizer, {"M": 4, "bits": 8, "beam": 8, "train_rows": 20000}, 4.0, 0.317, 0.183,
        chosen_on_valid={"RQ M=4 beam 1": 0.347, "RQ M=4 beam 8": 0.328}),
    row(codecs_faiss.LocalSearch, {"M": 4, "bits": 8, "train_rows": 20000}, 4.0, 0.341, 0.18),
    row(codecs_fsq.FSQ, {"levels": [8] * 10 + [4], "d": 11, "iterations": 6000}, 4.0, 0.384, 0.176),
    row(codecs_fsq.FSQ, {"levels": [8] * 16, "d": 16, "iterations": 6000}, 6.0, 0.318, 0.171),
    row(SDLGMCodec, {"K": 64, "L0": 2, "iterations": 3000}, 4.1, 0.675, 0.182),
    row(SDLGMCodec, {"K": 64, "L0": 4, "iterations": 3000}, 6.0, 0.644, 0.166),
    row(SDLGMLog1pCodec, {"K": 64, "L0": 4, "iterations": 3000}, 7.2, 0.666, 0.157),
    row(SearchBundleCodec, {"K": 1024, "L0": 4, "iterations": 3000, "bundle": "runs/search-M4-bundle",
                            "fingerprint": "cd", "gate": "on", "kind": "sdlgm-search"}, 4.0, 0.300, 0.17),
    row(BundleCodec, {"K": 64, "L0": 4, "iterations": 10000, "bundle": "models/kpi5g", "fingerprint": "ab"},
        5.9, 0.625, 0.177),
]
META = {"window": 10, "kpis": KPIS, "D": 80, "train_rows": 51081, "valid_rows": 1094, "test_rows": 2965,
        "train_traces": 58, "valid_traces": 8, "test_traces": 17, "train_pairs": 9805, "test_pairs": 2879,
        "train_low_share": 0.54, "test_low_share": 0.74, "majority_error": 0.256, "persistence_error": 0.232,
        "iterations": 3000, "config": {"K": 64, "L0": 4, "iterations": 10000}, "quick": False, "omp_rows": 3000,
        "omp_iterations": 4, "fsq_iterations": 6000, "faiss_rows": 20000, "opq_iterations": 10, "rq_beams": [[1, 1], [8, 8]],
        "threshold_kbps": 1000.0, "max_dl_bitrate": 532905.0, "median_dl_bitrate": 2.0, "std_dl_bitrate": 47180.0,
        "missing_share": {k: 0.01 for k in KPIS}, "seconds": 600.0}


def test_report_lists_every_row_with_its_figures(kpi_report: ModuleType, tmp_path: Path) -> None:
    text = kpi_report.markdown(ROWS, META, tmp_path / "kpi_rd.png", tmp_path / "kpi.md")
    lines = text.splitlines()
    for r in ROWS:
        line = (f"| {r['label']} | {r['bytes_per_vector']:.1f} | {r['entropy_bits_per_vector']:.1f} | "
                f"{r['nrmse']:.3f} | {r['nrmse_valid']:.3f} | {r['downstream_error']:.3f} |")
        assert any(x.startswith(line) for x in lines), r["label"]
    # the headline: the best baseline at the default's 5.9 bytes is RQ (0.317), 1.97x below the default
    assert "the best baseline is **RQ M=4 beam 8** (4 bytes, NRMSE 0.317): the default loses: 1.97x the error" in text
    assert "**k-means 256** at 1 byte per vector" in text  # the cheapest baseline reaching 0.625
    assert "Chosen: **SDLGM-search M=4 (K=1024)**" in text  # valid 0.311 against RQ's 0.328: the best ratio
    assert "**does not match this point**" in text  # the config says K = 64, L0 = 4 (kind sdlgm)
    # the goal, B by B: the best SDLGM point at <= B against the best baseline and against PQ at <= B
    assert "| 4 | SDLGM-search M=4 (K=1024) | 0.3000 | RQ M=4 beam 8 | 0.3170 | 0.9464 (wins) | 0.3660 | 0.820 |" in lines
    assert "| 6 | SDLGM-search M=4 (K=1024) | 0.3000 | RQ M=4 beam 8 | 0.3170 | 0.9464 (wins) | 0.3660 | 0.820 |" in lines
    assert "RQ M=4 beam 8 from RQ M=4 beam 1 0.347, RQ M=4 beam 8 0.328" in text
    for r in ROWS:  # the message table names every family once, beside its format
        assert sum(r["method"] in x and r["message"] in x for x in lines if x.startswith("| ")) == 1, r["method"]
    assert "| finite scalar quantization | FSQ 8^10 x 4 | 4 | 0.384 |" in text  # family by family
    # the byte grid: families with two or more whole-byte points, the best SDLGM row at <= bytes beside them
    assert "| bytes | product quantization | optimized PQ | finite scalar quantization | SDLGM (best at <= bytes) |" in text
    assert "| 4 | 0.366 | 0.331 | 0.384 | 0.300 (SDLGM-search M=4 (K=1024)) |" in lines
    assert "| 6 |  |  | 0.318 | 0.300 (SDLGM-search M=4 (K=1024)) |" in lines


def test_report_rebuilds_from_the_result_file_alone(kpi_report: ModuleType, tmp_path: Path) -> None:
    results = tmp_path / "results" / "kpi_rd.json"
    results.parent.mkdir()
    results.write_text(json.dumps({"meta": META, "rows": ROWS}))
    doc = tmp_path / "docs" / "kpi.md"
    assert kpi_report.main(["--results", str(results), "--doc", str(doc)]) == 0
    assert doc.read_text() == kpi_report.markdown(ROWS, META, results.with_suffix(".png"), doc)
    assert "](../results/kpi_rd.png)" in doc.read_text()
    assert results.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    old = tmp_path / "old.json"
    old.write_text(json.dumps(ROWS))  # the format before the split: rows without meta
    with pytest.raises(SystemExit) as e:
        kpi_report.main(["--results", str(old), "--doc", str(doc)])
    assert e.value.code == 2


def test_report_styles_tell_every_family_apart(kpi_report: ModuleType) -> None:
    styles = kpi_report.styles(ROWS)
    assert set(styles) == {r["method"] for r in ROWS if r["role"] != "reference"}
    assert len(set(styles.values())) == len(styles)
    assert styles[BundleCodec.family][1] == "*" and styles[SDLGMCodec.family][1] == "o"


def test_report_names_the_search_recipe_and_its_variants(kpi_report: ModuleType) -> None:
    meta = {"search_recipe": {"beam": 64, "train_beam": 16, "sweeps": 1, "candidates": 16},
            "search_variants": [[2, "candidates 64, sweeps 2"], [1, "iterations 30000"], [2, "iterations 9000"]]}
    text = kpi_report.search_recipe(meta)
    assert "a beam of 64 partial codes (16 while training), then 1 coordinate-descent sweep(s) over the 16" in text
    assert "(M = 1: iterations 30000; M = 2: candidates 64, sweeps 2 / iterations 9000)" in text
    assert kpi_report.search_recipe({}) == ""  # results written before the recipe was recorded


def test_the_search_recipe_key_ignores_the_default_points_slot_count(kpi_rd: ModuleType) -> None:
    model = {"kind": "sdlgm-search", "M": 2, "C": 256, "beam": 64, "sweeps": 1}
    assert kpi_rd.search_recipe_key(model) == kpi_rd.search_recipe_key({**model, "M": 8})
    assert kpi_rd.search_recipe_key(model) != kpi_rd.search_recipe_key({**model, "beam": 16})
