"""Counting digits (the paper's Table III): composite images of MNIST test digits, the exact count
likelihood of a sparse code, the SDLGM counting model and the random-forest baseline.

Each composite is 5 columns of 28 x 28, each column blank with probability 1/2 (a fair coin), else an
MNIST test image of a uniformly drawn class 0-9. The target is the 10-d count vector c (c_k = number of columns
showing digit k), so n = sum_k c_k <= L0 = 5. The training and test composites are made from disjoint
halves of the MNIST test digits (8,000 / 2,000 source images), from a fixed seed.

The count likelihood is SDLGM-Dis's generalized to counts above 1 (the code z = sum_l w_l z_l with
w_l ~ Bern(lambda) and z_l ~ Cat(pi), l = 1..L0, has the law):
  log q(c | x) = log Binomial(n; L0, lambda) + log n! - sum_k log c_k! + sum_k c_k log pi_k.
The prediction is the deterministic code (`model.codes`): the mode of the Binomial, then the exact mode
of the Multinomial.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from model import codes
from model.dis import count_log_likelihood

COLUMNS = 5
SIDE = 28
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


class CountNet(nn.Module):
    """The SDLGM's encoder f and sparsity net h for composites (B, 1, 28, 28 * columns) on a shared trunk:
    a small convolutional net reads each 28-px column (shared weights), the column features are summed
    (a count is a sum over columns), and two heads give pi logits (B, 10) and lambda logits (B, 2)."""

    def __init__(self, columns: int = COLUMNS, L0: int = COLUMNS, width: int = 32, hidden: int = 128) -> None:
        super().__init__()
        self.L0 = L0
        self.columns = columns
        self.column = nn.Sequential(
            nn.Conv2d(1, 16, 5, stride=2, padding=2), nn.ReLU(),  # (B * columns, 16, 14, 14)
            nn.Conv2d(16, width, 3, stride=2, padding=1), nn.ReLU(),  # (B * columns, width, 7, 7)
            nn.Flatten(), nn.Linear(width * 7 * 7, hidden), nn.ReLU(),
        )
        self.mix = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU())
        self.pi = nn.Linear(hidden, 10)
        self.lam = nn.Linear(hidden, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B = x.shape[0]
        cols = x.view(B, 1, SIDE, self.columns, SIDE).permute(0, 3, 1, 2, 4).reshape(B * self.columns, 1, SIDE, SIDE)
        h = self.mix(self.column(cols).view(B, self.columns, -1).sum(1))  # (B, hidden)
        return self.pi(h), self.lam(h)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch: int = 500) -> torch.Tensor:
        """The deterministic code's counts (B, 10) int64."""
        self.eval()
        out = []
        for xb in x.split(batch):
            pi, lam = self(xb)
            out.append(codes.deterministic_code(pi, lam, self.L0)[1])
        return torch.cat(out)


def as_input(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 28, W) -> float32 (N, 1, 28, W) in [0, 1]."""
    return torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)


def train_counter(train: Composites, epochs: int = 20, batch: int = 100, lr: float = 1e-3, seed: int = 0,
                  width: int = 32, hidden: int = 128) -> CountNet:
    """Adam on the exact count likelihood, lr divided by 3 for the last third of the epochs."""
    torch.manual_seed(seed)
    columns = train.images.shape[2] // SIDE
    net = CountNet(columns, L0=columns, width=width, hidden=hidden)
    x, c = as_input(train.images), torch.from_numpy(train.counts)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        if epoch == (2 * epochs) // 3:
            for g in opt.param_groups:
                g["lr"] = lr / 3
        net.train()
        for idx in torch.randperm(len(x), generator=gen).split(batch):
            pi, lam = net(x[idx])
            loss = -count_log_likelihood(pi, lam, c[idx], net.L0).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    net.eval()
    return net


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
