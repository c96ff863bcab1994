"""What a run trains on: turns a data config into arrays (train / valid / test) and names.

Gaussian data (KPI windows) and multi-label features stay in raw units here; `standardized` applies the
mean and std fitted on the training part, the same statistics that are baked into the exported graphs.
Binary pixels (MNIST) and the digit composites' intensities in [0, 1] are used as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from model.family import DataShape
from training import counting, datasets
from training.config import CompositesData, DataConfig, KpiData, MnistData, MulanData


@dataclass(frozen=True)
class Task:
    train: np.ndarray  # (N, D) float32, raw units
    valid: np.ndarray
    test: np.ndarray
    feature_names: list[str]
    likelihood: str  # bernoulli | gaussian | labels | counts
    mean: np.ndarray  # (D,) standardization fitted on train (zeros / ones for binary data)
    std: np.ndarray
    y_train: np.ndarray | None = None  # (N, K) targets: int8 labels (multi-label) or int64 counts
    y_valid: np.ndarray | None = None
    y_test: np.ndarray | None = None
    label_names: list[str] | None = None  # the K labels, or the count classes
    kpis: tuple[str, ...] | None = None

    @property
    def D(self) -> int:
        return int(self.train.shape[1])

    @property
    def shape(self) -> DataShape:
        """What a model family needs to know of this data (model.family.DataShape)."""
        return DataShape(D=self.D, likelihood="gaussian" if self.likelihood == "gaussian" else "bernoulli",
                         K=None if self.label_names is None else len(self.label_names))


def standardized(task: Task, x: np.ndarray) -> torch.Tensor:
    """Rows in the units the model sees: standardized Gaussian or multi-label features, else as they are."""
    if task.likelihood in ("bernoulli", "counts"):
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return torch.from_numpy(((x - task.mean) / task.std).astype(np.float32))


def targets(task: Task, split: str) -> torch.Tensor | None:
    """The split's targets as float32 (label sets or counts), None for unlabelled data."""
    y: np.ndarray | None = getattr(task, f"y_{split}")
    return None if y is None else torch.from_numpy(y.astype(np.float32))


def load_task(cfg: DataConfig, seed: int = 0) -> Task:
    root = datasets.data_dir(cfg.dir)
    if cfg.kind == "mnist":
        return _mnist(root, cfg)
    if cfg.kind == "kpi5g":
        return _kpi(root, cfg, seed)
    if cfg.kind == "mulan":
        return _mulan(root, cfg, seed)
    return _composites(root, cfg, seed)


def _mnist(root: Path, cfg: MnistData) -> Task:
    train = datasets.load_binarized_mnist("train", root)
    valid = datasets.load_binarized_mnist("valid", root)[: cfg.valid_size]
    test = datasets.load_binarized_mnist("test", root)
    D = train.shape[1]
    return Task(train, valid, test, [f"pixel{i}" for i in range(D)], "bernoulli",
                np.zeros(D, np.float32), np.ones(D, np.float32))


def kpi_task(s: datasets.KpiSplit) -> Task:
    """The training task of a KPI split: Gaussian likelihood on the split's standardization."""
    return Task(s.train, s.valid, s.test, s.feature_names, "gaussian", s.mean, s.std, kpis=s.kpis)


def _kpi(root: Path, cfg: KpiData, seed: int) -> Task:
    kpis = tuple(cfg.kpis) if cfg.kpis else datasets.DEFAULT_KPIS
    return kpi_task(datasets.load_kpi_split(root, kpis=kpis, window=cfg.window, stride=cfg.stride, seed=seed))


def _mulan(root: Path, cfg: MulanData, seed: int) -> Task:
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


def _composites(root: Path, cfg: CompositesData, seed: int) -> Task:
    """Table III's composites (training.counting), flattened, intensities in [0, 1]; no valid split."""
    images, labels = datasets.load_mnist_test(root)
    train, test = counting.split_composites(images, labels, cfg.n_train, cfg.n_test, seed=seed, p_blank=cfg.p_blank)
    x_train, x_test = (counting.as_input(c.images).flatten(1).numpy() for c in (train, test))
    D = x_train.shape[1]
    return Task(x_train, x_train[:0], x_test, [f"pixel{i}" for i in range(D)], "counts",
                np.zeros(D, np.float32), np.ones(D, np.float32), y_train=train.counts,
                y_valid=train.counts[:0], y_test=test.counts, label_names=[str(k) for k in range(10)])
