"""The Gumbel-Softmax VAE of Jang et al. (2017), the paper's baseline: N categorical latents of C classes
(20 x 10), or N Bernoulli latents (200 x 2), uniform prior, Bernoulli decoder. Same sampling modes and
ELBO bookkeeping as `model.sdlgm`, so every comparison runs through one evaluation. A baseline: FAMILY
(kind "gsvae") exports no bundle."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from model.family import Batch, DataShape, Family, Generative, Options, Widths
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


class GSVAE(Generative):
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

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        out = self(batch.x, batch.tau, batch.tau_z, batch.mode)
        loss = -(out["recon"] - batch.beta * (out["kl_gate"] + out["kl_code"])).mean()
        return {"loss": loss, **{k: v for k, v in out.items() if k != "z"}}

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mode of q: one class per variable, (L_hat = N (B,), one-hot counts (B, N * C))."""
        counts = F.one_hot(self.logits(x).argmax(-1), self.cfg.n_classes).flatten(1)
        return torch.full((x.shape[0],), self.cfg.n_vars), counts

    def decode_out(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def recon_log_likelihood(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return log_likelihood(x, out, self.cfg.likelihood, self.log_scale)

    def log_prior_over_q(self, slots: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """log p(y) - log q(y | x) for hard class indices (S, B, N)."""
        logq = torch.gather(F.log_softmax(logits, -1).unsqueeze(0).expand(slots.shape[0], -1, -1, -1), 3,
                            slots.unsqueeze(-1)).squeeze(-1)
        return (-math.log(self.cfg.n_classes) - logq).sum(-1)

    @torch.no_grad()
    def importance_samples(self, x: torch.Tensor, samples: int) -> tuple[torch.Tensor, torch.Tensor]:
        """S hard samples from q: one-hot codes (S, B, N * C) and log p(y) - log q(y | x) (S, B)."""
        cfg = self.cfg
        lg = self.logits(x)
        B = x.shape[0]
        probs = torch.softmax(lg, -1).reshape(-1, cfg.n_classes)
        slots = torch.multinomial(probs, samples, replacement=True).view(B, cfg.n_vars, samples).permute(2, 0, 1)
        z = F.one_hot(slots, cfg.n_classes).float().flatten(2)
        return z, self.log_prior_over_q(slots, lg)


class GSVAEOptions(Options):
    """`model:` of kind gsvae; D and the likelihood come from the data."""

    kind: Literal["gsvae"] = "gsvae"
    n_vars: int = Field(GSVAEConfig.n_vars, gt=0)
    n_classes: int = Field(GSVAEConfig.n_classes, gt=1)
    encoder: Widths = GSVAEConfig.encoder
    decoder: Widths = GSVAEConfig.decoder

    def config(self, shape: DataShape) -> GSVAEConfig:
        return GSVAEConfig(D=shape.D, n_vars=self.n_vars, n_classes=self.n_classes, encoder=self.encoder,
                           decoder=self.decoder, likelihood=shape.likelihood)


FAMILY = Family("gsvae", GSVAE, GSVAEConfig, GSVAEOptions, targets="none", graphs=())
