"""Tests for benchmarks/kpi_rd.py: the next-window pairs of the downstream task (no pair spans a gap or
two traces, missing values are filled or dropped as in the windows, no trace on both sides of the split)
and a tiny end-to-end run of the command (--quick) that writes the JSON, the plot and the doc."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from training import datasets
from training.datasets import DataError, Trace

REQUIRED = {"method", "params", "bytes_per_vector", "entropy_bits_per_vector", "nrmse", "rmse_per_kpi",
            "downstream_error"}


@pytest.fixture(scope="module")
def kpi_rd() -> ModuleType:
    import kpi_rd

    return kpi_rd


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
    rows = json.loads((tmp_path / "results" / "kpi_rd.json").read_text())
    methods = {r["method"] for r in rows}
    assert {"raw float32", "float16", "uniform scalar", "lossless", "PCA + uniform", "k-means VQ",
            "product quantization", "dictionary + OMP", "k-sparse AE", "SDLGM", "SDLGM, committed bundle",
            "SDLGM, log1p bitrates"} <= methods
    for r in rows:
        assert set(r) >= REQUIRED, r["method"]
        assert r["bytes_per_vector"] > 0 and r["nrmse"] >= 0 and 0 <= r["downstream_error"] <= 1
        assert set(r["rmse_per_kpi"]) == set(datasets.DEFAULT_KPIS)
    lossless = [r for r in rows if r["method"] == "lossless"]
    assert all(r["nrmse"] == 0 for r in lossless)
    assert (tmp_path / "results" / "kpi_rd.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = doc.read_text()
    assert "--quick run" in text and "## The default model's point" in text and "../results/kpi_rd.png" in text
