"""The SDLGM (Xu et al., Section III): sparse codes z in {0..L0}^K with at most L0 non-zeros.

Generative model: w_l ~ Bern(lambda0), z_l ~ Cat(1/K) for l = 1..L0, z = sum_l w_l z_l, x ~ p(x | g(z)).
Posterior: q(w_l) = Bern(lambda(x)) from the sparsity net h, q(z_l) = Cat(pi(x)) from the encoder f,
i.i.d. over l (or, in the per-slot variant, one pi_l per slot).
ELBO per observation: E_q[log p(x|z)] - L0 KL(Bern(lambda) || Bern(lambda0)) - sum_l KL(Cat(pi_l) || Cat(1/K)).

The config is a frozen dataclass saved inside every checkpoint, so a checkpoint alone rebuilds the model;
FAMILY registers the kind "sdlgm" (`model.registry`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from model import codes
from model.family import Batch, DataShape, Family, Generative, Options, Widths
from model.fused import sample_code_fused
from model.relax import Mode, kl_bernoulli, kl_categorical_uniform, sample_one_hot

Likelihood = Literal["bernoulli", "gaussian"]


@dataclass(frozen=True)
class SDLGMConfig:
    D: int
    K: int = 200
    L0: int = 40
    lambda0: float = 0.5
    encoder: tuple[int, ...] = (512, 384, 256)
    sparsity: tuple[int, ...] = (256, 64)
    decoder: tuple[int, ...] = (256, 384, 512)
    likelihood: Likelihood = "bernoulli"
    per_slot: bool = False


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def log_likelihood(
    x: torch.Tensor, out: torch.Tensor, likelihood: Likelihood, log_scale: torch.Tensor | None
) -> torch.Tensor:
    """log p(x | decoder output), summed over features; (B, D) -> (B,). x is standardized if Gaussian."""
    if likelihood == "bernoulli":
        return -F.binary_cross_entropy_with_logits(out, x, reduction="none").sum(-1)
    assert log_scale is not None
    z = (x - out) * torch.exp(-log_scale)
    return (-0.5 * z**2 - log_scale - 0.5 * math.log(2 * math.pi)).sum(-1)


def sample_code_autograd(
    pi_logits: torch.Tensor, lambda_logits: torch.Tensor, tau: torch.Tensor | float,
    tau_z: torch.Tensor | float, mode: Mode, L0: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """z = sum_l w_l z_l (B, K) and L (B,) written as plain autograd ops over (B, L0, K); pi_logits (B, K)
    shared by the slots or (B, L0, K) one per slot. The reference the fused sampler is tested against."""
    B, K = lambda_logits.shape[0], pi_logits.shape[-1]
    w = sample_one_hot(lambda_logits.unsqueeze(1).expand(B, L0, 2), tau, mode)[..., 1]  # (B, L0)
    slot_logits = pi_logits if pi_logits.dim() == 3 else pi_logits.unsqueeze(1).expand(B, L0, K)
    z_l = sample_one_hot(slot_logits, tau_z, mode)  # (B, L0, K)
    return (w.unsqueeze(-1) * z_l).sum(1), w.sum(-1)


class SDLGM(Generative):
    cfg: SDLGMConfig
    x_mean: torch.Tensor
    x_std: torch.Tensor
    log_scale: nn.Parameter | None

    def __init__(self, cfg: SDLGMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        n_pi = cfg.K * cfg.L0 if cfg.per_slot else cfg.K
        self.encoder = mlp([cfg.D, *cfg.encoder, n_pi])
        self.sparsity = mlp([cfg.D, *cfg.sparsity, 2])
        self.decoder = mlp([cfg.K, *cfg.decoder, cfg.D])
        # Gaussian likelihood: a learned per-feature scale on the standardized data.
        self.log_scale = nn.Parameter(torch.zeros(cfg.D)) if cfg.likelihood == "gaussian" else None
        # Standardization of raw inputs, fitted on the training part; baked into the exported graphs.
        self.register_buffer("x_mean", torch.zeros(cfg.D))
        self.register_buffer("x_std", torch.ones(cfg.D))

    def pi_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) standardized -> (B, K), or (B, L0, K) per slot."""
        out = self.encoder(x)
        return out.view(-1, self.cfg.L0, self.cfg.K) if self.cfg.per_slot else out

    def lambda_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) standardized -> (B, 2) logits of (w_l = 0, w_l = 1)."""
        return self.sparsity(x)

    def kl(self, pi_logits: torch.Tensor, lambda_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact KLs of the discrete posterior against the prior: (gate (B,), code (B,))."""
        lam = codes.gate_probability(lambda_logits).to(pi_logits.dtype)
        kl_gate = self.cfg.L0 * kl_bernoulli(lam, self.cfg.lambda0)
        kl_cat = kl_categorical_uniform(pi_logits)
        kl_code = kl_cat.sum(-1) if self.cfg.per_slot else self.cfg.L0 * kl_cat
        return kl_gate, kl_code

    def sample_code(
        self, pi_logits: torch.Tensor, lambda_logits: torch.Tensor, tau: torch.Tensor | float,
        tau_z: torch.Tensor | float, mode: Mode,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One sample of z = sum_l w_l z_l: (z (B, K), L = sum_l w_l (B,)). Straight-through with a shared
        pi and a fixed slot temperature goes through `model.fused` (same samples and gradients, less work)."""
        fixed_tau_z = not (isinstance(tau_z, torch.Tensor) and tau_z.requires_grad)
        if mode == "st" and not self.cfg.per_slot and fixed_tau_z:
            return sample_code_fused(pi_logits, lambda_logits, tau, tau_z, self.cfg.L0)
        return sample_code_autograd(pi_logits, lambda_logits, tau, tau_z, mode, self.cfg.L0)

    def forward(
        self, x: torch.Tensor, tau: torch.Tensor | float = 1.0, tau_z: torch.Tensor | float = 1.0,
        mode: Mode = "st",
    ) -> dict[str, torch.Tensor]:
        """ELBO terms for standardized x with one sample of the code; every entry is (B,) except z."""
        pi, lam = self.pi_logits(x), self.lambda_logits(x)
        z, L = self.sample_code(pi, lam, tau, tau_z, mode)
        recon = log_likelihood(x, self.decoder(z), self.cfg.likelihood, self.log_scale)
        kl_gate, kl_code = self.kl(pi, lam)
        return {
            "elbo": recon - kl_gate - kl_code,
            "recon": recon,
            "kl_gate": kl_gate,
            "kl_code": kl_code,
            "L": L,
            "z": z,
        }

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        """-ELBO averaged over the batch ("loss") beside the ELBO terms per row."""
        out = self(batch.x, batch.tau, batch.tau_z, batch.mode)
        return {"loss": -out["elbo"].mean(), **{k: v for k, v in out.items() if k != "z"}}

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The deterministic code for standardized x: (L_hat (B,), counts (B, K))."""
        return codes.deterministic_code(self.pi_logits(x), self.lambda_logits(x), self.cfg.L0)

    def deployed(self) -> SDLGM:
        return self

    def decode_out(self, z: torch.Tensor) -> torch.Tensor:
        """Decoder output for counts (B, K): Bernoulli logits, or the standardized Gaussian mean."""
        return self.decoder(z)

    def reconstruct(self, z: torch.Tensor) -> torch.Tensor:
        """What the bundle's decoder graph gives for counts (B, K): Bernoulli probabilities, or the
        Gaussian mean in original units."""
        out = self.decoder(z)
        if self.cfg.likelihood == "bernoulli":
            return torch.sigmoid(out)
        return out * self.x_std + self.x_mean

    def decoder_scale(self) -> list[float] | None:
        """The Gaussian decoder's learned scale in original units (None for Bernoulli data)."""
        if self.log_scale is None:
            return None
        return (torch.exp(self.log_scale.detach()) * self.x_std).tolist()

    def recon_log_likelihood(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return log_likelihood(x, out, self.cfg.likelihood, self.log_scale)

    def standardize(self, x_raw: torch.Tensor) -> torch.Tensor:
        return (x_raw - self.x_mean) / self.x_std

    def log_prior_over_q(
        self, w: torch.Tensor, slots: torch.Tensor, pi_logits: torch.Tensor, lambda_logits: torch.Tensor
    ) -> torch.Tensor:
        """log p(w, z_1..L0) - log q(w, z_1..L0 | x) for hard samples w (S, B, L0) in {0,1} and slot
        indices (S, B, L0); used by the importance-sampled estimate of log p(x)."""
        cfg = self.cfg
        log_lam = F.log_softmax(lambda_logits, -1)  # (B, 2)
        log_q_w = torch.where(w > 0.5, log_lam[:, 1:2], log_lam[:, 0:1])  # (S, B, L0)
        log_p_w = torch.where(w > 0.5, math.log(cfg.lambda0), math.log(1 - cfg.lambda0))
        logp = F.log_softmax(pi_logits, -1)
        if cfg.per_slot:
            log_q_z = torch.gather(logp.unsqueeze(0).expand(slots.shape[0], -1, -1, -1), 3,
                                   slots.unsqueeze(-1)).squeeze(-1)
        else:
            log_q_z = torch.gather(logp.unsqueeze(0).expand(slots.shape[0], -1, -1), 2, slots)
        return (log_p_w - log_q_w - math.log(cfg.K) - log_q_z).sum(-1)

    @torch.no_grad()
    def importance_samples(self, x: torch.Tensor, samples: int) -> tuple[torch.Tensor, torch.Tensor]:
        """S hard samples of the code from q: counts z (S, B, K) and log p(w, z) - log q(w, z | x) (S, B)."""
        cfg = self.cfg
        pi, lam = self.pi_logits(x), self.lambda_logits(x)
        B = x.shape[0]
        p_on = codes.gate_probability(lam, lam.dtype)  # (B,)
        w = (torch.rand(samples, B, cfg.L0) < p_on[None, :, None]).float()
        probs = torch.softmax(pi, -1)
        if cfg.per_slot:
            slots = torch.multinomial(probs.reshape(-1, cfg.K), samples, replacement=True)  # (B*L0, S)
            slots = slots.view(B, cfg.L0, samples).permute(2, 0, 1)
        else:
            slots = torch.multinomial(probs, samples * cfg.L0, replacement=True).view(B, samples, cfg.L0)
            slots = slots.permute(1, 0, 2)  # (S, B, L0)
        z = torch.zeros(samples, B, cfg.K).scatter_add_(2, slots, w)
        return z, self.log_prior_over_q(w, slots, pi, lam)


class SDLGMOptions(Options):
    """`model:` of kind sdlgm; D and the likelihood come from the data."""

    kind: Literal["sdlgm"] = "sdlgm"
    K: int = Field(SDLGMConfig.K, gt=1)
    L0: int = Field(SDLGMConfig.L0, gt=0, le=255)
    lambda0: float = Field(SDLGMConfig.lambda0, gt=0, lt=1)
    encoder: Widths = SDLGMConfig.encoder
    sparsity: Widths = SDLGMConfig.sparsity
    decoder: Widths = SDLGMConfig.decoder
    per_slot: bool = SDLGMConfig.per_slot

    def config(self, shape: DataShape) -> SDLGMConfig:
        return SDLGMConfig(D=shape.D, K=self.K, L0=self.L0, lambda0=self.lambda0, encoder=self.encoder,
                           sparsity=self.sparsity, decoder=self.decoder, likelihood=shape.likelihood,
                           per_slot=self.per_slot)


FAMILY = Family("sdlgm", SDLGM, SDLGMConfig, SDLGMOptions, targets="none", graphs=("encoder", "sparsity", "decoder"))
