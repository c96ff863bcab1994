"""Tests for training/datasets.py: checksums and errors, MNIST, KPI windows and split, Mulan ARFF."""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from training import datasets
from training.datasets import (
    DEFAULT_KPIS,
    DataError,
    KpiSplit,
    MultiLabelData,
    Trace,
    data_dir,
    drop_unlabelled,
    fill_missing,
    load_binarized_mnist,
    load_kpi_split,
    load_kpi_traces,
    load_mnist_test,
    load_mulan,
    make_windows,
    read_mulan,
    verified,
    window_feature_names,
)


@pytest.fixture(scope="module")
def root() -> Path:
    try:
        return data_dir()
    except DataError as e:
        pytest.skip(f"shared data not available: {e}")


@pytest.fixture(scope="module")
def kpi_split(root: Path) -> KpiSplit:
    return load_kpi_split(root)


# ------------------------------------------------------------------------ data directory, checksums


def test_data_dir_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDLGM_DATA_DIR", str(tmp_path))
    assert data_dir() == tmp_path
    assert data_dir(tmp_path / "..") == tmp_path / ".."
    with pytest.raises(DataError, match="nowhere.*SDLGM_DATA_DIR"):
        data_dir(tmp_path / "nowhere")
    monkeypatch.setenv("SDLGM_DATA_DIR", str(tmp_path / "gone"))
    with pytest.raises(DataError, match="gone.*from SDLGM_DATA_DIR"):
        data_dir()


def test_verified_detects_one_changed_byte(root: Path, tmp_path: Path) -> None:
    data = bytearray((root / "mulan/emotions.xml").read_bytes())
    (tmp_path / "mulan").mkdir()
    (tmp_path / "mulan/emotions.xml").write_bytes(data)
    assert verified("mulan/emotions.xml", tmp_path) == tmp_path / "mulan/emotions.xml"
    data[10] ^= 1
    (tmp_path / "mulan/emotions.xml").write_bytes(data)
    with pytest.raises(DataError, match=r"corrupted data file .*mulan/emotions\.xml"):
        verified("mulan/emotions.xml", tmp_path)


def test_verified_missing_and_unknown_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing data file .*mulan/birds\.xml.*SDLGM_DATA_DIR"):
        verified("mulan/birds.xml", tmp_path)
    (tmp_path / "mine.arff").write_text("@relation x\n")
    with pytest.raises(DataError, match="mine.arff has no known checksum"):
        verified("mine.arff", tmp_path)


def test_verified_hashes_each_file_version_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real_sha256: Callable[..., Any] = hashlib.sha256

    def counting_sha256(*args: Any) -> Any:
        calls.append(1)
        return real_sha256(*args)

    monkeypatch.setattr(datasets.hashlib, "sha256", counting_sha256)
    monkeypatch.setitem(datasets.CHECKSUMS, "x.bin", real_sha256(b"abc").hexdigest())
    (tmp_path / "x.bin").write_bytes(b"abc")
    for _ in range(3):
        verified("x.bin", tmp_path)
    assert len(calls) == 1
    (tmp_path / "x.bin").write_bytes(b"abd")
    with pytest.raises(DataError, match="corrupted"):
        verified("x.bin", tmp_path)
    assert len(calls) == 2


# ------------------------------------------------------------------------------------------- MNIST


def test_binarized_mnist_test_split(root: Path) -> None:
    x = load_binarized_mnist("test", root)
    assert x.shape == (10000, 784) and x.dtype == np.float32
    assert set(np.unique(x)) == {0.0, 1.0}


def test_mnist_idx_test_set(root: Path) -> None:
    images, labels = load_mnist_test(root)
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and labels.dtype == np.int64
    assert labels.min() == 0 and labels.max() == 9 and len(np.unique(labels)) == 10


def test_mnist_idx_bad_magic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    payload = gzip.compress(np.array([2049, 1, 28, 28], dtype=">u4").tobytes() + bytes(784))
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist/t10k-images-idx3-ubyte.gz").write_bytes(payload)
    monkeypatch.setitem(
        datasets.CHECKSUMS, "mnist/t10k-images-idx3-ubyte.gz", hashlib.sha256(payload).hexdigest()
    )
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz: not an IDX file with magic 2051"):
        load_mnist_test(tmp_path)


# -------------------------------------------------------------------------------------------- KPIs


def test_fill_missing_fills_short_runs_only() -> None:
    nan = np.nan
    col = np.array([nan, 1, nan, nan, 4, nan, nan, nan, 8, nan])
    values = np.stack([col, np.full(10, nan)], axis=1)
    filled = fill_missing(values, max_gap=2)
    np.testing.assert_array_equal(filled[:, 0], [1, 1, 1, 1, 4, nan, nan, nan, 8, 8])
    assert np.isnan(filled[:, 1]).all()
    assert np.isnan(values[0, 0])  # the input is not modified


def _synthetic_trace() -> tuple[Trace, np.ndarray]:
    """Two time segments (7 s, a 3 s gap, 10 s); returns the trace and its expected filled values."""
    seconds = np.r_[0:7, 10:20].astype(np.int64)
    values = np.stack([np.arange(17.0), 10 * np.arange(17.0)], axis=1)
    filled = values.copy()
    values[2, 1], filled[2, 1] = np.nan, 10.0  # short gap: forward-filled
    values[7, 1], filled[7, 1] = np.nan, 80.0  # starts a time segment: back-filled, not from row 6
    values[10:13, 0] = filled[10:13, 0] = np.nan  # 3 > max_gap: stays missing
    return Trace("synthetic.csv", seconds, values), filled


def test_make_windows_respects_time_gaps_and_missing_values() -> None:
    trace, filled = _synthetic_trace()
    windows = make_windows(trace, window=3, stride=2, max_gap=2)
    # segment 1 starts 0, 2, 4; segment 2 (rows 7-16) starts 7, 9, 11, 13 of which 9 and 11 hold NaN
    expected = np.stack([filled[r : r + 3].reshape(-1) for r in (0, 2, 4, 7, 13)]).astype(np.float32)
    np.testing.assert_array_equal(windows, expected)
    assert windows.dtype == np.float32


def test_make_windows_puts_back_skipped_seconds() -> None:
    seconds = np.array([0, 1, 3, 4, 5, 6], np.int64)  # second 2 was skipped by the logger
    values = np.arange(6.0)[:, None]
    windows = make_windows(Trace("skip.csv", seconds, values), window=3, stride=1, max_gap=1)
    # the grid is 0..6 with second 2 forward-filled from second 1
    np.testing.assert_array_equal(windows[:, 0], [0, 1, 1, 2, 3])
    np.testing.assert_array_equal(windows[1], [1, 1, 2])
    assert len(make_windows(Trace("skip.csv", seconds, values), window=3, stride=1, max_gap=0)) == 2


def test_window_feature_names_match_flattened_order() -> None:
    trace, filled = _synthetic_trace()
    names = window_feature_names(["a", "b"], 3)
    assert names == ["a@t0", "b@t0", "a@t1", "b@t1", "a@t2", "b@t2"]
    first = make_windows(trace, window=3, stride=2, max_gap=2)[0]
    for name, value in zip(names, first, strict=True):
        kpi, t = name.split("@t")
        assert value == filled[int(t), "ab".index(kpi)]


def test_kpi_split_by_trace(kpi_split: KpiSplit) -> None:
    parts = [set(kpi_split.train_traces), set(kpi_split.valid_traces), set(kpi_split.test_traces)]
    assert all(parts) and sum(map(len, parts)) == len(set.union(*parts)) == 83
    for x in (kpi_split.train, kpi_split.valid, kpi_split.test):
        assert x.ndim == 2 and x.shape[1] == 80 and len(x) > 0 and x.dtype == np.float32
        assert not np.isnan(x).any()
    assert kpi_split.feature_names == window_feature_names(DEFAULT_KPIS, 10)
    train = kpi_split.train.astype(np.float64)  # float32 sums over ~5k rows lose digits
    np.testing.assert_allclose(kpi_split.mean, train.mean(axis=0), rtol=1e-6, atol=1e-6)
    std = train.std(axis=0)
    np.testing.assert_allclose(kpi_split.std, np.where(std < 1e-6, 1.0, std), rtol=1e-6)
    assert kpi_split.mean.dtype == kpi_split.std.dtype == np.float32 and (kpi_split.std > 0).all()


def test_kpi_traces_unknown_column(root: Path) -> None:
    with pytest.raises(DataError, match=r"unknown KPI column\(s\) \['Nope'\]; available columns: .*'RSRP'"):
        load_kpi_traces(root, ["RSRP", "Nope"])


# ------------------------------------------------------------------------------------------- Mulan

MULAN_TABLE = [  # name, features, nominal one-hot features, labels, train rows, test rows
    ("emotions", 72, 0, 6, 391, 202),
    ("birds", 258 + 2 + 12, 2 + 12, 19, 322, 323),
    ("cal500", 68, 0, 174, 502, None),
]


@pytest.mark.parametrize(("name", "n_features", "n_onehot", "n_labels", "n_train", "n_test"), MULAN_TABLE)
def test_mulan_real_sets(
    root: Path, name: str, n_features: int, n_onehot: int, n_labels: int, n_train: int, n_test: int | None
) -> None:
    train, test = load_mulan(name, root)
    assert (test is None) == (n_test is None)
    for d, n in ((train, n_train), (test, n_test)):
        if d is None:
            continue
        assert d.X.shape == (n, n_features) and d.X.dtype == np.float32 and np.isfinite(d.X).all()
        assert d.Y.shape == (n, n_labels) and d.Y.dtype == np.int8 and set(np.unique(d.Y)) <= {0, 1}
        assert len(d.feature_names) == n_features and len(d.label_names) == n_labels
        assert sum("=" in f for f in d.feature_names) == n_onehot


def test_mulan_quoted_names_and_unlabelled_rows(root: Path) -> None:
    train, _ = load_mulan("birds", root)
    assert "Swainson's Thrush" in train.label_names and "location=17" in train.feature_names
    kept = drop_unlabelled(train)
    assert len(kept.Y) == train.Y.any(axis=1).sum() < len(train.Y) and kept.Y.any(axis=1).all()


def test_load_mulan_unknown_name(root: Path) -> None:
    with pytest.raises(DataError, match="unknown Mulan data set 'yeast'; known: emotions, birds, cal500"):
        load_mulan("yeast", root)


TINY_ARFF = """% a tiny multi-label set
@RELATION 'tiny set'

@attribute 'my feature' numeric
@attribute colour {red, 'dark blue'}
@ATTRIBUTE count INTEGER
@attribute lab1 {0,1}
@attribute 'lab \\'2\\'' {0,1}

@data
% sparse rows omit zeros; a nominal's zero is its first value
{0 1.5, 1 'dark blue', 3 1}
{2 7, 4 1}
2.5, red, ?, 0, 0
{}
"""
TINY_XML = """<?xml version="1.0" encoding="utf-8"?>
<labels xmlns="http://mulan.sourceforge.net/labels"><label name="lab1"/><label name="lab '2'"/></labels>
"""


def _write_tiny(tmp_path: Path, arff: str = TINY_ARFF) -> tuple[Path, Path]:
    (tmp_path / "tiny.arff").write_text(arff)
    (tmp_path / "tiny.xml").write_text(TINY_XML)
    return tmp_path / "tiny.arff", tmp_path / "tiny.xml"


def test_read_mulan_synthetic_sparse_round_trip(tmp_path: Path) -> None:
    d = read_mulan(*_write_tiny(tmp_path))
    assert d.feature_names == ["my feature", "colour=red", "colour=dark blue", "count"]
    assert d.label_names == ["lab1", "lab '2'"]
    expected_x = [[1.5, 0, 1, 0], [0, 1, 0, 7], [2.5, 1, 0, 7 / 3], [0, 1, 0, 0]]  # '?' -> column mean
    np.testing.assert_allclose(d.X, np.array(expected_x, dtype=np.float32))
    np.testing.assert_array_equal(d.Y, [[1, 0], [0, 1], [0, 0], [0, 0]])
    kept = drop_unlabelled(d)
    assert isinstance(kept, MultiLabelData)
    np.testing.assert_array_equal(kept.X, d.X[:2])
    np.testing.assert_array_equal(kept.Y, d.Y[:2])


@pytest.mark.parametrize(
    ("bad_row", "message"),
    [("1, red, 3, 0", "4 values for 5 attributes"), ("1, green, 3, 0, 1", "'green' is not one of colour")],
)
def test_read_mulan_bad_row_names_file_and_line(tmp_path: Path, bad_row: str, message: str) -> None:
    arff, xml = _write_tiny(tmp_path, TINY_ARFF + bad_row + "\n")
    with pytest.raises(DataError, match=rf"tiny\.arff, line 16: {message}"):
        read_mulan(arff, xml)


def test_read_mulan_label_missing_from_arff(tmp_path: Path) -> None:
    arff, xml = _write_tiny(tmp_path, TINY_ARFF.replace("lab1", "other"))
    with pytest.raises(DataError, match=r"labels \['lab1'\] named in .*tiny\.xml are not attributes"):
        read_mulan(arff, xml)
