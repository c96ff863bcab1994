"""SDLGM-Con: the code is the labels y (observed, |y| <= L0) plus unobserved sparse features z (an SDLGM
code of Kz slots, at most L0z non-zeros); the decoder models p(x | y, z); the encoder gives
q(y, z | x) = q(y | x) q(z | x) from one shared trunk, and q(y | x) predicts the labels.

Loss per row (x standardized), one straight-through sample of z (model.fused, tau fixed):
  -log p(x | y, z) - log p(y) + KL(q(z | x) || p(z)) - alpha log q(y | x)
with p(y) the SDLGM code prior (model.gen.log_code_prior), the exact discrete KL of the gates and slots
(as in model.sdlgm) and log q(y | x) SDLGM-Dis's exact likelihood. Because the trunk is shared, the
generative terms shape the features that q(y | x) reads (unlike SDLGM-Gen, whose encoder is separate).
The supervised half exports like SDLGM-Dis (`self.dis`: its encoder and sparsity net read the trunk).
FAMILY registers the kind "sdlgm-con".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from model import codes
from model.dis import DisConfig, ReadsThroughDis, SDLGMDis
from model.family import Batch, DataShape, Family, Options, Widths
from model.fused import sample_code_fused
from model.gen import log_code_prior
from model.relax import kl_bernoulli, kl_categorical_uniform
from model.sdlgm import log_likelihood, mlp


@dataclass(frozen=True)
class ConConfig:
    D: int
    K: int
    L0: int
    Kz: int = 16
    L0z: int = 4
    encoder: tuple[int, ...] = (128,)
    decoder: tuple[int, ...] = (128,)
    lambda0: float = 0.5
    alpha: float = 1.0
    tau: float = 1.0


class SDLGMCon(ReadsThroughDis):
    cfg: ConConfig

    def __init__(self, cfg: ConConfig) -> None:
        super().__init__()
        self.cfg = cfg
        h = cfg.encoder[-1]
        self.trunk = nn.Sequential(mlp([cfg.D, *cfg.encoder]), nn.ReLU())
        self.dis = SDLGMDis(DisConfig(D=cfg.D, K=cfg.K, L0=cfg.L0, encoder=cfg.encoder, lambda0=cfg.lambda0))
        # q(y | x) reads the shared trunk; replacing the MLPs keeps SDLGM-Dis's interface for export.
        self.dis.encoder = nn.Sequential(self.trunk, nn.Linear(h, cfg.K))
        self.dis.sparsity = nn.Sequential(self.trunk, nn.Linear(h, 2))
        self.pi_z = nn.Linear(h, cfg.Kz)
        self.lam_z = nn.Linear(h, 2)
        self.decoder = mlp([cfg.K + cfg.Kz, *cfg.decoder, cfg.D])
        self.log_scale = nn.Parameter(torch.zeros(cfg.D))

    def z_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(pi_z logits (B, Kz), lambda_z logits (B, 2))."""
        t = self.trunk(x)
        return self.pi_z(t), self.lam_z(t)

    def kl_z(self, pi_z: torch.Tensor, lam_z: torch.Tensor) -> torch.Tensor:
        lam = codes.gate_probability(lam_z).to(pi_z.dtype)
        return self.cfg.L0z * (kl_bernoulli(lam, self.cfg.lambda0) + kl_categorical_uniform(pi_z))

    def recon(self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x | y, z); (B,)."""
        return log_likelihood(x, self.decoder(torch.cat([y.to(x.dtype), z], -1)), "gaussian", self.log_scale)

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Per row, for one sample of z: recon log p(x | y, z), log_prior log p(y), kl_z, label_ll
        log q(y | x) and the objective of the module docstring; "loss" is the objective's mean."""
        x, y = batch.x, batch.targets("sdlgm-con")
        pi_z, lam_z = self.z_logits(x)
        z, _ = sample_code_fused(pi_z, lam_z, self.cfg.tau, self.cfg.tau, self.cfg.L0z)
        yf = y.to(x.dtype)
        recon = self.recon(x, yf, z)
        log_prior = log_code_prior(yf, self.cfg.L0, self.cfg.lambda0)
        kl_z = self.kl_z(pi_z, lam_z)
        label_ll = self.dis.log_likelihood(x, y)
        objective = -recon - log_prior + kl_z - self.cfg.alpha * label_ll
        return {"loss": objective.mean(), "objective": objective, "recon": recon, "log_prior": log_prior,
                "kl_z": kl_z, "label_ll": label_ll}


class ConOptions(Options):
    """`model:` of kind sdlgm-con; D and K (the number of labels) come from the data."""

    kind: Literal["sdlgm-con"] = "sdlgm-con"
    L0: int = Field(gt=0, le=255)
    Kz: int = Field(ConConfig.Kz, gt=1)
    L0z: int = Field(ConConfig.L0z, gt=0)
    encoder: Widths = Field(ConConfig.encoder, min_length=1)  # the shared trunk
    decoder: Widths = ConConfig.decoder
    lambda0: float = Field(ConConfig.lambda0, gt=0, lt=1)
    alpha: float = Field(ConConfig.alpha, ge=0)
    tau: float = Field(ConConfig.tau, gt=0)

    def config(self, shape: DataShape) -> ConConfig:
        return ConConfig(D=shape.D, K=shape.classes(self.kind), L0=self.L0, Kz=self.Kz, L0z=self.L0z,
                         encoder=self.encoder, decoder=self.decoder, lambda0=self.lambda0, alpha=self.alpha,
                         tau=self.tau)


FAMILY = Family("sdlgm-con", SDLGMCon, ConConfig, ConOptions, targets="labels", graphs=("encoder", "sparsity"))
