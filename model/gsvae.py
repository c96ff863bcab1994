"""The Gumbel-Softmax VAE of Jang et al. (2017), the paper's baseline: N categorical latents of C classes
(20 x 10), or N Bernoulli latents (200 x 2), uniform prior, Bernoulli decoder. Same sampling modes and
ELBO bookkeeping as `model.sdlgm`, so every comparison runs through one evaluation."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from model.relax import Mode, kl_categorical_uniform, sample_one_hot
from model.sdlgm import Likelihood, log_likelihood, mlp


@dataclass(frozen=True)
class GSVAEConfig:
    D: int
    n_vars: int = 20
    n_classes: int = 10
    encoder: tuple[int, ...] = (512, 256)
    decoder: tuple[int, ...] = (256, 512)
    likelihood: Likelihood = "bernoulli"


class GSVAE(nn.Module):
    cfg: GSVAEConfig
    log_scale: nn.Parameter | None

    def __init__(self, cfg: GSVAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = mlp([cfg.D, *cfg.encoder, cfg.n_vars * cfg.n_classes])
        self.decoder = mlp([cfg.n_vars * cfg.n_classes, *cfg.decoder, cfg.D])
        self.log_scale = nn.Parameter(torch.zeros(cfg.D)) if cfg.likelihood == "gaussian" else None

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x).view(-1, self.cfg.n_vars, self.cfg.n_classes)  # (B, N, C)

    def forward(
        self, x: torch.Tensor, tau: torch.Tensor | float = 1.0, tau_z: torch.Tensor | float = 1.0,
        mode: Mode = "st",
    ) -> dict[str, torch.Tensor]:
        lg = self.logits(x)
        y = sample_one_hot(lg, tau, mode)
        recon = log_likelihood(x, self.decoder(y.flatten(1)), self.cfg.likelihood, self.log_scale)
        kl = kl_categorical_uniform(lg).sum(-1)
        zero = torch.zeros_like(kl)
        return {"elbo": recon - kl, "recon": recon, "kl_gate": zero, "kl_code": kl, "z": y.flatten(1)}

    @torch.no_grad()
    def mode_code(self, x: torch.Tensor) -> torch.Tensor:
        lg = self.logits(x)
        return F.one_hot(lg.argmax(-1), self.cfg.n_classes).to(x.dtype).flatten(1)

    def log_prior_over_q(self, slots: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """log p(y) - log q(y | x) for hard class indices (S, B, N)."""
        logq = torch.gather(F.log_softmax(logits, -1).unsqueeze(0).expand(slots.shape[0], -1, -1, -1), 3,
                            slots.unsqueeze(-1)).squeeze(-1)
        return (-math.log(self.cfg.n_classes) - logq).sum(-1)
