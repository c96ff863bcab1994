"""SDLGM-Dis: the supervised discriminative variant for multi-label data.

The labels y (a set, |y| <= L0) are the observed code, so the likelihood is exact (no relaxation):
  log q(y | x) = log Binomial(|y|; L0, lambda) + log(|y|!) + sum_{k in y} log pi_k
(the code has count 1 at each label of y: L = |y| active gates, and a multinomial over their slots).
Prediction: P(k in code) = 1 - (1 - lambda pi_k)^L0, thresholded per label, and the predicted count.
FAMILY registers the kind "sdlgm-dis"; its bundle is the encoder and sparsity graphs (no decoder).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from model import codes
from model.family import Batch, DataShape, Family, Options, Supervised, Widths
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


def count_log_likelihood(pi_logits: torch.Tensor, lambda_logits: torch.Tensor, counts: torch.Tensor,
                         L0: int) -> torch.Tensor:
    """log q(c | x) of count vectors c (B, K) with sum <= L0 (a label set is the 0/1 case), for logits pi
    (B, K) and lambda (B, 2): log Binomial(n; L0, lambda) + log n! - sum_k log c_k! + sum_k c_k log pi_k; (B,)."""
    c = counts.to(pi_logits.dtype)
    n = c.sum(-1)
    if bool((n > L0).any()):
        raise ValueError(f"a label set or count vector is larger than L0 = {L0}")
    log_lam = F.log_softmax(lambda_logits, -1)  # (B, 2): log(1 - lambda), log lambda
    log_pi = F.log_softmax(pi_logits, -1)
    return (log_binomial(n, L0, log_lam[:, 1], log_lam[:, 0]) + torch.lgamma(n + 1)
            - torch.lgamma(c + 1).sum(-1) + (c * log_pi).sum(-1))


class SDLGMDis(Supervised):
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
        return count_log_likelihood(self.pi_logits(x), self.lambda_logits(x), y, self.cfg.L0)

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        """-log q(y | x) per row ("nll") and its mean ("loss")."""
        nll = -self.log_likelihood(batch.x, batch.targets("sdlgm-dis"))
        return {"loss": nll.mean(), "nll": nll}

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The deterministic code: the predicted label count L_hat and the most likely label set."""
        return codes.deterministic_code(self.pi_logits(x), self.lambda_logits(x), self.cfg.L0)

    def deployed(self) -> SDLGMDis:
        return self

    def label_log_likelihood(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.log_likelihood(x, y)

    @torch.no_grad()
    def label_probability(self, x: torch.Tensor) -> torch.Tensor:
        lam_logits = self.lambda_logits(x)
        lam = codes.gate_probability(lam_logits, lam_logits.dtype)[:, None]  # (B, 1)
        pi = F.softmax(self.pi_logits(x), -1)
        return 1 - (1 - lam * pi) ** self.cfg.L0


class DisOptions(Options):
    """`model:` of kind sdlgm-dis; D and K (the number of labels) come from the data."""

    kind: Literal["sdlgm-dis"] = "sdlgm-dis"
    L0: int = Field(gt=0, le=255)
    encoder: Widths = DisConfig.encoder
    sparsity: Widths = DisConfig.sparsity
    lambda0: float = Field(DisConfig.lambda0, gt=0, lt=1)

    def config(self, shape: DataShape) -> DisConfig:
        return DisConfig(D=shape.D, K=shape.classes(self.kind), L0=self.L0, encoder=self.encoder,
                         sparsity=self.sparsity, lambda0=self.lambda0)


FAMILY = Family("sdlgm-dis", SDLGMDis, DisConfig, DisOptions, targets="labels", graphs=("encoder", "sparsity"))


class ReadsThroughDis(Supervised):
    """A supervised family whose q(y | x) is an SDLGM-Dis (`self.dis`: SDLGM-Gen, SDLGM-Con): its code, its
    deployed graphs, its label likelihood and probabilities are the SDLGM-Dis's."""

    dis: SDLGMDis

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.dis.encode(x)

    def deployed(self) -> SDLGMDis:
        return self.dis

    def label_log_likelihood(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.dis.log_likelihood(x, y)

    def label_probability(self, x: torch.Tensor) -> torch.Tensor:
        return self.dis.label_probability(x)
