"""What a run trains on: turns a DataConfig into arrays (train / valid / test) and names.

Gaussian data (KPI windows) stays in raw units here; the trainer standardizes with the mean and std
fitted on the training part, and the same statistics are baked into the exported graphs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training import datasets
from training.config import DataConfig


@dataclass(frozen=True)
class Task:
    train: np.ndarray  # (N, D) float32, raw units
    valid: np.ndarray
    test: np.ndarray
    feature_names: list[str]
    likelihood: str  # bernoulli | gaussian | labels
    mean: np.ndarray  # (D,) standardization fitted on train (zeros / ones for binary data)
    std: np.ndarray
    y_train: np.ndarray | None = None  # (N, K) int8 labels, multi-label tasks only
    y_valid: np.ndarray | None = None
    y_test: np.ndarray | None = None
    label_names: list[str] | None = None
    kpis: tuple[str, ...] | None = None

    @property
    def D(self) -> int:
        return int(self.train.shape[1])


def load_task(cfg: DataConfig, seed: int = 0) -> Task:
    root = datasets.data_dir(cfg.dir)
    if cfg.kind == "mnist":
        return _mnist(root, cfg)
    if cfg.kind == "kpi5g":
        return _kpi(root, cfg, seed)
    return _mulan(root, cfg, seed)


def _mnist(root: Path, cfg: DataConfig) -> Task:
    train = datasets.load_binarized_mnist("train", root)
    valid = datasets.load_binarized_mnist("valid", root)[: cfg.valid_size]
    test = datasets.load_binarized_mnist("test", root)
    D = train.shape[1]
    return Task(train, valid, test, [f"pixel{i}" for i in range(D)], "bernoulli",
                np.zeros(D, np.float32), np.ones(D, np.float32))


def kpi_task(s: datasets.KpiSplit) -> Task:
    """The training task of a KPI split: Gaussian likelihood on the split's standardization."""
    return Task(s.train, s.valid, s.test, s.feature_names, "gaussian", s.mean, s.std, kpis=s.kpis)


def _kpi(root: Path, cfg: DataConfig, seed: int) -> Task:
    kpis = tuple(cfg.kpis) if cfg.kpis else datasets.DEFAULT_KPIS
    return kpi_task(datasets.load_kpi_split(root, kpis=kpis, window=cfg.window, stride=cfg.stride, seed=seed))


def _mulan(root: Path, cfg: DataConfig, seed: int) -> Task:
    if cfg.mulan_arff and cfg.mulan_xml:
        train, test = datasets.read_mulan(Path(cfg.mulan_arff), Path(cfg.mulan_xml)), None
    elif cfg.mulan_set:
        train, test = datasets.load_mulan(cfg.mulan_set, root)
    else:
        raise ValueError("data.kind mulan needs data.mulan_set, or data.mulan_arff and data.mulan_xml")
    train = datasets.drop_unlabelled(train)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(train.X))
    if test is None:  # no official split: hold out 20% for test
        n_test = max(1, len(order) // 5)
        test = datasets.MultiLabelData(train.X[order[:n_test]], train.Y[order[:n_test]],
                                       train.feature_names, train.label_names)
        order = order[n_test:]
    else:
        test = datasets.drop_unlabelled(test)
    n_valid = max(1, len(order) // 10)
    va, tr = order[:n_valid], order[n_valid:]
    X, Y = train.X, train.Y
    mean = X[tr].mean(0).astype(np.float32)
    std = datasets.safe_std(X[tr].std(0).astype(np.float32)).astype(np.float32)
    return Task(X[tr], X[va], test.X, train.feature_names, "labels", mean, std,
                y_train=Y[tr], y_valid=Y[va], y_test=test.Y, label_names=train.label_names)
