"""SDLGM-Dis: the supervised discriminative variant for multi-label data.

The labels y (a set, |y| <= L0) are the observed code, so the likelihood is exact (no relaxation):
  log q(y | x) = log Binomial(|y|; L0, lambda) + log(|y|!) + sum_{k in y} log pi_k
(the code has count 1 at each label of y: L = |y| active gates, and a multinomial over their slots).
Prediction: P(k in code) = 1 - (1 - lambda pi_k)^L0, thresholded per label, and the predicted count.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from model.sdlgm import mlp


@dataclass(frozen=True)
class DisConfig:
    D: int
    K: int
    L0: int
    encoder: tuple[int, ...] = (256,)
    sparsity: tuple[int, ...] = (64,)
    lambda0: float = 0.5


def log_binomial(k: torch.Tensor, n: int, log_p: torch.Tensor, log_1mp: torch.Tensor) -> torch.Tensor:
    kf = k.to(log_p.dtype)
    log_choose = torch.lgamma(torch.tensor(n + 1.0)) - torch.lgamma(kf + 1) - torch.lgamma(n - kf + 1)
    return log_choose + kf * log_p + (n - kf) * log_1mp


class SDLGMDis(nn.Module):
    cfg: DisConfig
    x_mean: torch.Tensor
    x_std: torch.Tensor

    def __init__(self, cfg: DisConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = mlp([cfg.D, *cfg.encoder, cfg.K])
        self.sparsity = mlp([cfg.D, *cfg.sparsity, 2])
        self.register_buffer("x_mean", torch.zeros(cfg.D))
        self.register_buffer("x_std", torch.ones(cfg.D))

    def pi_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def lambda_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.sparsity(x)

    def log_likelihood(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """log q(y | x) for binary label vectors y (B, K) with |y| <= L0; (B,)."""
        size = y.sum(-1)
        if bool((size > self.cfg.L0).any()):
            raise ValueError(f"a label set is larger than L0 = {self.cfg.L0}")
        log_lam = F.log_softmax(self.lambda_logits(x), -1)  # (B, 2): log(1 - lambda), log lambda
        log_pi = F.log_softmax(self.pi_logits(x), -1)
        return (
            log_binomial(size, self.cfg.L0, log_lam[:, 1], log_lam[:, 0])
            + torch.lgamma(size.to(log_pi.dtype) + 1)
            + (y.to(log_pi.dtype) * log_pi).sum(-1)
        )

    @torch.no_grad()
    def label_probability(self, x: torch.Tensor) -> torch.Tensor:
        lam = torch.sigmoid(self.lambda_logits(x).diff(dim=-1))  # (B, 1)
        pi = F.softmax(self.pi_logits(x), -1)
        return 1 - (1 - lam * pi) ** self.cfg.L0
