"""SDLGM-Gen: the generative model of Fig. 1 with the labels as the observed code.

The code y (a label set, |y| <= L0, count 1 per label) is observed, so the generative model is exact:
  log p(x, y) = log p(x | y) + log p(y),
  log p(y) = log Binomial(|y|; L0, lambda0) + log(|y|!) - |y| log K          (the code's prior, Section III)
with a Gaussian decoder p(x | y) on standardized features (a learned per-feature scale). The encoder
q(y | x) (pi and lambda, SDLGM-Dis's exact likelihood) is trained with the extra loss on the observed
labels, weighted by alpha (as in semi-supervised VAEs):
  loss(x, y) = -log p(x | y) - log p(y) - alpha log q(y | x).
Prediction uses the encoder: P(k in code) = 1 - (1 - lambda pi_k)^L0, like SDLGM-Dis. With every label
observed the decoder and encoder share no parameter, so the predictions are SDLGM-Dis's up to training
noise; the decoder adds p(x | y), i.e. features generated from a label set. FAMILY registers the kind
"sdlgm-gen"; its bundle is its encoder q(y | x), exported like SDLGM-Dis's (`self.dis`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from model.dis import DisConfig, ReadsThroughDis, SDLGMDis, log_binomial
from model.family import Batch, DataShape, Family, Options, Widths
from model.sdlgm import log_likelihood, mlp


@dataclass(frozen=True)
class GenConfig:
    D: int
    K: int
    L0: int
    encoder: tuple[int, ...] = (256,)
    sparsity: tuple[int, ...] = (64,)
    decoder: tuple[int, ...] = (256,)
    lambda0: float = 0.5
    alpha: float = 1.0


def log_code_prior(y: torch.Tensor, L0: int, lambda0: float) -> torch.Tensor:
    """log p(y) of binary label vectors (B, K) under the SDLGM prior (uniform slots); (B,)."""
    n = y.sum(-1)
    K = y.shape[-1]
    ones = torch.ones_like(n)
    return (log_binomial(n, L0, math.log(lambda0) * ones, math.log(1 - lambda0) * ones)
            + torch.lgamma(n + 1) - n * math.log(K))


class SDLGMGen(ReadsThroughDis):
    cfg: GenConfig

    def __init__(self, cfg: GenConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.dis = SDLGMDis(DisConfig(D=cfg.D, K=cfg.K, L0=cfg.L0, encoder=cfg.encoder, sparsity=cfg.sparsity,
                                      lambda0=cfg.lambda0))
        self.decoder = mlp([cfg.K, *cfg.decoder, cfg.D])
        self.log_scale = nn.Parameter(torch.zeros(cfg.D))

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Per row: recon log p(x | y), log_prior log p(y), label_ll log q(y | x) and the objective
        -log p(x, y) - alpha log q(y | x); "loss" is the objective's mean."""
        x, y = batch.x, batch.targets("sdlgm-gen")
        yf = y.to(x.dtype)
        recon = log_likelihood(x, self.decoder(yf), "gaussian", self.log_scale)
        log_prior = log_code_prior(yf, self.cfg.L0, self.cfg.lambda0)
        label_ll = self.dis.log_likelihood(x, y)
        objective = -(recon + log_prior) - self.cfg.alpha * label_ll
        return {"loss": objective.mean(), "objective": objective, "recon": recon, "log_prior": log_prior,
                "label_ll": label_ll}


class GenOptions(Options):
    """`model:` of kind sdlgm-gen; D and K (the number of labels) come from the data."""

    kind: Literal["sdlgm-gen"] = "sdlgm-gen"
    L0: int = Field(gt=0, le=255)
    encoder: Widths = GenConfig.encoder
    sparsity: Widths = GenConfig.sparsity
    decoder: Widths = GenConfig.decoder
    lambda0: float = Field(GenConfig.lambda0, gt=0, lt=1)
    alpha: float = Field(GenConfig.alpha, ge=0)

    def config(self, shape: DataShape) -> GenConfig:
        return GenConfig(D=shape.D, K=shape.classes(self.kind), L0=self.L0, encoder=self.encoder,
                         sparsity=self.sparsity, decoder=self.decoder, lambda0=self.lambda0, alpha=self.alpha)


FAMILY = Family("sdlgm-gen", SDLGMGen, GenConfig, GenOptions, targets="labels", graphs=("encoder", "sparsity"))
