"""Counting digits (the paper's Table III): composite images of MNIST test digits, the training of the
counting model (`model.count`, kind "count") through the one loop, and the random-forest baseline.

Each composite is 5 columns of 28 x 28, each column blank with probability 1/2 (a fair coin), else an
MNIST test image of a uniformly drawn class 0-9. The target is the 10-d count vector c (c_k = number of columns
showing digit k), so n = sum_k c_k <= L0 = 5. The training and test composites are made from disjoint
halves of the MNIST test digits (8,000 / 2,000 source images), from a fixed seed.

The model is trained on the exact count likelihood of a sparse code (SDLGM-Dis's generalized to counts
above 1, `model.dis.count_log_likelihood`); the prediction is the deterministic code (`model.codes`): the
mode of the Binomial, then the exact mode of the Multinomial.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from model import count
from model.count import SIDE, CountModel
from model.family import Batch, DataShape
from training.loop import Loop, LoopConfig, Schedule, run, steps_per_epoch

COLUMNS = 5
BLANK = -1


@dataclass(frozen=True)
class Composites:
    images: np.ndarray  # uint8 (N, 28, 28 * columns)
    digits: np.ndarray  # int64 (N, columns): the digit in each column, BLANK (-1) for none
    counts: np.ndarray  # int64 (N, 10)


def make_composites(images: np.ndarray, labels: np.ndarray, n: int, rng: np.random.Generator,
                    columns: int = COLUMNS, p_blank: float = 0.5) -> Composites:
    """n composites from the source digits (images (M, 28, 28), labels (M,)); a column is blank with
    probability p_blank, else a source image of a uniformly drawn class (drawn with replacement)."""
    by_class = [np.flatnonzero(labels == k) for k in range(10)]
    missing = [k for k, idx in enumerate(by_class) if len(idx) == 0]
    if missing:
        raise ValueError(f"the source digits have no example of class(es) {missing}")
    digits = np.where(rng.random((n, columns)) < p_blank, BLANK, rng.integers(0, 10, size=(n, columns)))
    out = np.zeros((n, SIDE, SIDE * columns), np.uint8)
    for i in range(n):
        for c in range(columns):
            d = digits[i, c]
            if d != BLANK:
                out[i, :, SIDE * c: SIDE * (c + 1)] = images[rng.choice(by_class[d])]
    counts = np.stack([(digits == k).sum(1) for k in range(10)], axis=1)
    return Composites(out, digits.astype(np.int64), counts.astype(np.int64))


def split_composites(images: np.ndarray, labels: np.ndarray, n_train: int = 5000, n_test: int = 1000,
                     seed: int = 0, test_fraction: float = 0.2, p_blank: float = 0.5,
                     ) -> tuple[Composites, Composites]:
    """Train and test composites from disjoint source digits (a seeded split of the given images)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(images))
    n_src_test = int(round(test_fraction * len(images)))
    test_src, train_src = order[:n_src_test], order[n_src_test:]
    train = make_composites(images[train_src], labels[train_src], n_train, rng, p_blank=p_blank)
    test = make_composites(images[test_src], labels[test_src], n_test, rng, p_blank=p_blank)
    return train, test


def as_input(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 28, W) -> float32 (N, 1, 28, W) in [0, 1]."""
    return torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)


def train_counter(train: Composites, epochs: int = 20, batch: int = 100, lr: float = 1e-3, seed: int = 0,
                  width: int = 32, hidden: int = 128) -> CountModel:
    """Adam on the exact count likelihood over epochs of seeded permutations, lr divided by 3 for the
    last third of the epochs."""
    torch.manual_seed(seed)
    x, c = as_input(train.images), torch.from_numpy(train.counts)
    model = count.FAMILY.build(DataShape(D=x[0].numel(), K=c.shape[1]), width=width, hidden=hidden)
    per_epoch = steps_per_epoch(len(x), batch)
    cfg = LoopConfig(steps=epochs * per_epoch, batch_size=batch, lr=lr, drop_last=False, seed=seed,
                     schedule=Schedule("step", at=(2 * epochs) // 3 * per_epoch, divisor=3))
    run(Loop(cfg, model.parameters(), len(x), lambda idx, _: model.loss(Batch(x[idx], c[idx])), [model]))
    return model.eval()


@torch.no_grad()
def predict(model: CountModel, x: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """The deterministic code's counts (B, 10) int64, in batches."""
    model.eval()
    return torch.cat([model.encode(xb)[1] for xb in x.split(batch)])


def mse(pred: np.ndarray, counts: np.ndarray) -> float:
    """Mean squared error over all images and the 10 count entries."""
    return float(np.mean((np.asarray(pred, np.float64) - counts) ** 2))


def forest_counts(train: Composites, test: Composites, trees: int = 100, seed: int = 0,
                  jobs: int = 2) -> np.ndarray:
    """A scikit-learn random forest regressor on the raw pixels, predicting the count vector."""
    from sklearn.ensemble import RandomForestRegressor

    rf = RandomForestRegressor(n_estimators=trees, max_features="sqrt", random_state=seed, n_jobs=jobs)
    rf.fit(train.images.reshape(len(train.images), -1), train.counts)
    return np.asarray(rf.predict(test.images.reshape(len(test.images), -1)))
