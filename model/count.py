"""The counting model of Table III: the SDLGM's encoder f and sparsity net h for composite images of
digit columns, trained on the exact likelihood of the observed count vector c (`model.dis`):
  log q(c | x) = log Binomial(n; L0, lambda) + log n! - sum_k log c_k! + sum_k c_k log pi_k,  n = sum_k c_k.
The prediction is the deterministic code (`model.codes`). FAMILY registers the kind "count" (a benchmark
model: no bundle).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from model import codes
from model.dis import count_log_likelihood
from model.family import Batch, DataShape, Family, Options, SparseModel

SIDE = 28  # pixels of a digit column's side


@dataclass(frozen=True)
class CountConfig:
    columns: int = 5  # digit columns per image: the input is (B, 1, 28, 28 * columns), or flat
    L0: int = 5  # at most one digit per column
    K: int = 10  # digit classes
    width: int = 32  # channels of the second convolution
    hidden: int = 128


class CountModel(SparseModel):
    """A small convolutional net reads each 28-px column (shared weights), the column features are summed
    (a count is a sum over columns), and two heads give pi logits (B, K) and lambda logits (B, 2)."""

    cfg: CountConfig

    def __init__(self, cfg: CountConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.column = nn.Sequential(
            nn.Conv2d(1, 16, 5, stride=2, padding=2), nn.ReLU(),  # (B * columns, 16, 14, 14)
            nn.Conv2d(16, cfg.width, 3, stride=2, padding=1), nn.ReLU(),  # (B * columns, width, 7, 7)
            nn.Flatten(), nn.Linear(cfg.width * 7 * 7, cfg.hidden), nn.ReLU(),
        )
        self.mix = nn.Sequential(nn.Linear(cfg.hidden, cfg.hidden), nn.ReLU())
        self.pi = nn.Linear(cfg.hidden, cfg.K)
        self.lam = nn.Linear(cfg.hidden, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images x (B, 1, 28, 28 * columns) or (B, 28 * 28 * columns) -> (pi logits, lambda logits)."""
        B, cols = x.shape[0], self.cfg.columns
        col = x.view(B, 1, SIDE, cols, SIDE).permute(0, 3, 1, 2, 4).reshape(B * cols, 1, SIDE, SIDE)
        h = self.mix(self.column(col).view(B, cols, -1).sum(1))  # (B, hidden)
        return self.pi(h), self.lam(h)

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        """-log q(c | x) per row ("nll") and its mean ("loss")."""
        pi, lam = self(batch.x)
        nll = -count_log_likelihood(pi, lam, batch.targets("count"), self.cfg.L0)
        return {"loss": nll.mean(), "nll": nll}

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The deterministic code: the predicted total and the predicted counts (B, K) int64."""
        pi, lam = self(x)
        return codes.deterministic_code(pi, lam, self.cfg.L0)


class CountOptions(Options):
    """`model:` of kind count; the columns (L0 = columns) and K come from the data."""

    kind: Literal["count"] = "count"
    width: int = Field(CountConfig.width, gt=0)
    hidden: int = Field(CountConfig.hidden, gt=0)

    def config(self, shape: DataShape) -> CountConfig:
        columns, rest = divmod(shape.D, SIDE * SIDE)
        if rest or not columns:
            raise ValueError(f"model kind count reads columns of {SIDE} x {SIDE} pixels; D = {shape.D} is not")
        return CountConfig(columns=columns, L0=columns, K=shape.classes(self.kind), width=self.width,
                           hidden=self.hidden)


FAMILY = Family("count", CountModel, CountConfig, CountOptions, targets="counts", graphs=())
