"""The SDLGM (Xu et al., Section III): sparse codes z in {0..L0}^K with at most L0 non-zeros.

Generative model: w_l ~ Bern(lambda0), z_l ~ Cat(1/K) for l = 1..L0, z = sum_l w_l z_l, x ~ p(x | g(z)).
Posterior: q(w_l) = Bern(lambda(x)) from the sparsity net h, q(z_l) = Cat(pi(x)) from the encoder f,
i.i.d. over l (or, in the per-slot variant, one pi_l per slot).
ELBO per observation: E_q[log p(x|z)] - L0 KL(Bern(lambda) || Bern(lambda0)) - sum_l KL(Cat(pi_l) || Cat(1/K)).

Options beyond the paper (each measured in docs/results/table1.md):
  gated_kl   q(z_l | w_l = 0) = p(z_l): an off slot never reaches the decoder, so its category costs nothing
             and the code KL is lambda * sum_l KL(pi_l || 1/K) (the paper charges all L0 slots). The same
             posterior enters the importance weights: a valid ELBO of the same generative model.
  gate=slot  the gate moves into the slot: the K categories are L0 blocks of m = K / L0, and slot l is one
             categorical over {its m categories, off} with prior (lambda0 / m, ..., lambda0 / m, 1 - lambda0),
             learned per slot with learned_prior. z is 0/1 with at most one 1 per block and there is no
             sparsity net: a partitioned code (the bundle's gate "slot").

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
from model.relax import Mode, kl_bernoulli, kl_categorical, kl_categorical_uniform, sample_one_hot

Likelihood = Literal["bernoulli", "gaussian"]
Gate = Literal["shared", "slot"]
Scale = Literal["feature", "shared", "fixed"]


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
    gate: Gate = "shared"
    learned_prior: bool = False  # gate "slot": the per-slot prior over {categories, off} is learned
    gated_kl: bool = False  # gate "shared": q(z_l | w_l = 0) = p(z_l), the KL of off slots is not charged
    scale: Scale = "feature"  # Gaussian: a learned scale per feature, one learned for all, or fixed at sigma
    sigma: float = 1.0  # the fixed scale (standardized units) when scale is "fixed"
    usage_weight: float = 0.0  # weight of KL(batch-mean pi || uniform) in the loss, against codebook collapse

    def __post_init__(self) -> None:
        if self.gate == "slot" and (self.K % self.L0 or self.per_slot or self.gated_kl):
            raise ValueError("gate slot needs L0 to divide K, and is per slot with a gated KL by construction")
        if self.learned_prior and self.gate != "slot":
            raise ValueError("learned_prior is an option of gate slot")

    @property
    def block(self) -> int:
        """m = K / L0, the categories of one slot under gate slot."""
        return self.K // self.L0


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
    z = (x - out) * torch.exp(-log_scale)  # log_scale (D,) or (1,): per feature or shared
    return (-0.5 * z**2 - log_scale.expand(x.shape[-1]) - 0.5 * math.log(2 * math.pi)).sum(-1)


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
    log_scale: torch.Tensor | None  # a parameter (learned scale) or a buffer (fixed), None for Bernoulli data
    x_mean: torch.Tensor
    x_std: torch.Tensor

    def __init__(self, cfg: SDLGMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        n_pi = cfg.K * cfg.L0 if cfg.per_slot else cfg.K
        if cfg.gate == "slot":
            n_pi = cfg.L0 * (cfg.block + 1)
            prior = torch.tensor([math.log(cfg.lambda0 / cfg.block)] * cfg.block + [math.log(1 - cfg.lambda0)])
            prior = prior.repeat(cfg.L0, 1)  # (L0, m + 1) log-probabilities, "off" last
            if cfg.learned_prior:
                self.prior_logits = nn.Parameter(prior)
            else:
                self.register_buffer("prior_logits", prior)
        self.encoder = mlp([cfg.D, *cfg.encoder, n_pi])
        self.sparsity = mlp([cfg.D, *cfg.sparsity, 2]) if cfg.gate == "shared" else None
        self.decoder = mlp([cfg.K, *cfg.decoder, cfg.D])
        # Gaussian likelihood: a learned per-feature scale on the standardized data.
        if cfg.likelihood == "gaussian" and cfg.scale == "fixed":
            self.register_buffer("log_scale", torch.full((cfg.D,), math.log(cfg.sigma)))
        elif cfg.likelihood == "gaussian":
            self.log_scale = nn.Parameter(torch.zeros(cfg.D if cfg.scale == "feature" else 1))
        else:
            self.log_scale = None
        # Standardization of raw inputs, fitted on the training part; baked into the exported graphs.
        self.register_buffer("x_mean", torch.zeros(cfg.D))
        self.register_buffer("x_std", torch.ones(cfg.D))

    def pi_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) standardized -> (B, K), or (B, L0, K) per slot, or (B, L0, m + 1) under gate slot."""
        out = self.encoder(x)
        if self.cfg.gate == "slot":
            return out.view(-1, self.cfg.L0, self.cfg.block + 1)
        return out.view(-1, self.cfg.L0, self.cfg.K) if self.cfg.per_slot else out

    def lambda_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) standardized -> (B, 2) logits of (w_l = 0, w_l = 1); under gate slot, zeros (unused)."""
        if self.sparsity is None:
            return x.new_zeros(x.shape[0], 2)
        return self.sparsity(x)

    def log_prior(self) -> torch.Tensor:
        """Gate slot: (L0, m + 1) log p of each slot's symbol, "off" last."""
        return F.log_softmax(self.prior_logits, -1)

    def kl(self, pi_logits: torch.Tensor, lambda_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact KLs of the discrete posterior against the prior: (gate (B,), code (B,))."""
        if self.cfg.gate == "slot":
            return pi_logits.new_zeros(pi_logits.shape[0]), kl_categorical(pi_logits, self.log_prior()).sum(-1)
        lam = codes.gate_probability(lambda_logits).to(pi_logits.dtype)
        kl_gate = self.cfg.L0 * kl_bernoulli(lam, self.cfg.lambda0)
        kl_cat = kl_categorical_uniform(pi_logits)
        kl_code = kl_cat.sum(-1) if self.cfg.per_slot else self.cfg.L0 * kl_cat
        return kl_gate, lam * kl_code if self.cfg.gated_kl else kl_code

    def sample_code(
        self, pi_logits: torch.Tensor, lambda_logits: torch.Tensor, tau: torch.Tensor | float,
        tau_z: torch.Tensor | float, mode: Mode,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One sample of z = sum_l w_l z_l: (z (B, K), L = sum_l w_l (B,)). Straight-through with a shared
        pi and a fixed slot temperature goes through `model.fused` (same samples and gradients, less work)."""
        if self.cfg.gate == "slot":
            y = sample_one_hot(pi_logits, tau_z, mode)  # (B, L0, m + 1)
            z = y[..., :-1].flatten(1)
            return z, z.sum(-1)
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
        loss = -(out["recon"] - batch.beta * (out["kl_gate"] + out["kl_code"])).mean()
        if self.cfg.usage_weight:
            loss = loss + self.cfg.usage_weight * self.usage_penalty(batch.x)
        return {"loss": loss, **{k: v for k, v in out.items() if k != "z"}}

    def usage_penalty(self, x: torch.Tensor) -> torch.Tensor:
        """KL(mean over the batch of pi || uniform), summed over slots for per-slot posteriors: zero when the
        batch uses every category equally, large when the codebook collapses onto a few."""
        pi = self.pi_logits(x)
        probs = torch.softmax(pi, -1)[..., :-1] if self.cfg.gate == "slot" else torch.softmax(pi, -1)
        usage = probs.mean(0)
        usage = usage / usage.sum(-1, keepdim=True)
        return (usage * (usage.clamp_min(1e-12).log() + math.log(usage.shape[-1]))).sum()

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The deterministic code for standardized x: (L_hat (B,), counts (B, K))."""
        if self.cfg.gate == "slot":
            counts = codes.slot_counts(codes.slot_mode(self.pi_logits(x)), self.cfg.block)
            return counts.sum(-1), counts
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
        return (torch.exp(self.log_scale.detach()).expand(self.cfg.D) * self.x_std).tolist()

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
        log_z = -math.log(cfg.K) - log_q_z
        if cfg.gated_kl:  # an off slot's category is drawn from the prior: its terms cancel
            log_z = w * log_z
        return (log_p_w - log_q_w + log_z).sum(-1)

    @torch.no_grad()
    def importance_samples(self, x: torch.Tensor, samples: int) -> tuple[torch.Tensor, torch.Tensor]:
        """S hard samples of the code from q: counts z (S, B, K) and log p(w, z) - log q(w, z | x) (S, B)."""
        cfg = self.cfg
        pi, lam = self.pi_logits(x), self.lambda_logits(x)
        B = x.shape[0]
        if cfg.gate == "slot":
            q = F.log_softmax(pi, -1)  # (B, L0, m + 1)
            sym = torch.multinomial(q.exp().reshape(-1, cfg.block + 1), samples, replacement=True)
            sym = sym.view(B, cfg.L0, samples).permute(2, 0, 1)  # (S, B, L0)
            log_q = torch.gather(q.unsqueeze(0).expand(samples, -1, -1, -1), 3, sym.unsqueeze(-1)).squeeze(-1)
            log_p = self.log_prior()[torch.arange(cfg.L0), sym]  # (S, B, L0)
            z = codes.slot_counts(sym.flatten(0, 1), cfg.block).view(samples, B, cfg.K).to(x.dtype)
            return z, (log_p - log_q).sum(-1)
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
    gate: Gate = SDLGMConfig.gate
    learned_prior: bool = SDLGMConfig.learned_prior
    gated_kl: bool = SDLGMConfig.gated_kl
    scale: Scale = SDLGMConfig.scale
    sigma: float = Field(SDLGMConfig.sigma, gt=0)
    usage_weight: float = Field(SDLGMConfig.usage_weight, ge=0)

    def config(self, shape: DataShape) -> SDLGMConfig:
        return SDLGMConfig(D=shape.D, K=self.K, L0=self.L0, lambda0=self.lambda0, encoder=self.encoder,
                           sparsity=self.sparsity, decoder=self.decoder, likelihood=shape.likelihood,
                           per_slot=self.per_slot, gate=self.gate, learned_prior=self.learned_prior,
                           gated_kl=self.gated_kl, scale=self.scale, sigma=self.sigma,
                           usage_weight=self.usage_weight)


FAMILY = Family("sdlgm", SDLGM, SDLGMConfig, SDLGMOptions, targets="none", graphs=("encoder", "sparsity", "decoder"))
