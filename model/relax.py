"""Gumbel-softmax relaxations and the exact KLs of the discrete posteriors.

Three ways to draw a one-hot sample from logits (..., C):
  relaxed   y = softmax((logits + g) / tau)                 (Jang et al.; the paper's Eq. 8, 10, 12)
  st        one_hot(argmax y) forward, gradient of y back   (straight-through)
  hard      one_hot(argmax(logits + g)), an exact categorical sample, no gradient
  gr        Gumbel-Rao (Paulus et al., 2021): the straight-through one-hot forward, and back the gradient
            of the mean over GR_SAMPLES of softmax((logits + g_m) / tau), with the g_m drawn from the Gumbels
            conditioned on the sampled argmax: the same forward as st, a lower-variance backward
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

Mode = Literal["relaxed", "st", "hard", "gr"]
GR_SAMPLES = 8  # conditional Gumbel sets per sample of the Gumbel-Rao estimator


def log_uniform_like(x: torch.Tensor) -> torch.Tensor:
    """log U of x's shape, dtype and device, U ~ Uniform[0, 1) raised to the smallest normal number, so
    the result is finite and negative. The one source of the samplers' noise: -log U ~ Exp(1), and on CPU
    it costs about a sixth of Tensor.exponential_, which dominated the SDLGM's (B, L0, K) slot noise."""
    return torch.rand_like(x).clamp_min_(torch.finfo(x.dtype).tiny).log_()


def exponential_like(x: torch.Tensor) -> torch.Tensor:
    """Exp(1) noise of x's shape and dtype: -log U."""
    return log_uniform_like(x).neg_()


def gumbel_like(x: torch.Tensor) -> torch.Tensor:
    """Standard Gumbel noise: -log E with E ~ Exp(1)."""
    return exponential_like(x).log_().neg_()


def sample_one_hot(logits: torch.Tensor, tau: torch.Tensor | float, mode: Mode) -> torch.Tensor:
    """A (relaxed) one-hot sample over the last axis; same shape as logits."""
    if mode == "gr":
        return gumbel_rao(logits, tau, GR_SAMPLES)
    perturbed = logits + gumbel_like(logits)
    if mode == "hard":
        return F.one_hot(perturbed.argmax(-1), logits.shape[-1]).to(logits.dtype)
    y = F.softmax(perturbed / tau, dim=-1)
    if mode == "relaxed":
        return y
    hard = F.one_hot(y.argmax(-1), logits.shape[-1]).to(logits.dtype)
    return hard - y.detach() + y


def gumbel_rao(logits: torch.Tensor, tau: torch.Tensor | float, samples: int) -> torch.Tensor:
    """The Gumbel-Rao straight-through sample: a hard one-hot D ~ Cat(softmax(logits)) forward; back, the
    gradient of E[softmax((logits + G) / tau) | argmax = D], estimated with `samples` conditional draws.
    Given D, the maximum of the perturbed logits is Gumbel(logsumexp(logits)) and every other perturbed
    logit is its own Gumbel truncated below that maximum."""
    th = logits.detach()
    C = logits.shape[-1]
    with torch.no_grad():
        hard = F.one_hot((th + gumbel_like(th)).argmax(-1), C).to(th.dtype)
        top = torch.logsumexp(th, -1, keepdim=True) + gumbel_like(th[..., :1].expand(samples, *th.shape[:-1], 1))
        log_e = exponential_like(th.expand(samples, *th.shape)).log_()  # log Exp(1)
        pert = -torch.logaddexp(-top, log_e - th)  # Gumbel(theta_i) truncated below top
        noise = torch.where(hard.bool(), top.expand_as(pert), pert) - th
    y = F.softmax((logits.unsqueeze(0) + noise) / tau, dim=-1).mean(0)
    return hard - y.detach() + y


def kl_categorical_uniform(logits: torch.Tensor) -> torch.Tensor:
    """KL(Cat(softmax(logits)) || Cat(1/C)) over the last axis; (..., C) -> (...)."""
    logp = F.log_softmax(logits, dim=-1)
    return (logp.exp() * logp).sum(-1) + math.log(logits.shape[-1])


def kl_categorical(logits: torch.Tensor, prior_log_probs: torch.Tensor) -> torch.Tensor:
    """KL(Cat(softmax(logits)) || Cat(exp(prior_log_probs))) over the last axis; (..., C) -> (...)."""
    logp = F.log_softmax(logits, dim=-1)
    return (logp.exp() * (logp - prior_log_probs)).sum(-1)


def kl_bernoulli(lam: torch.Tensor, lam0: float) -> torch.Tensor:
    """KL(Bern(lam) || Bern(lam0)), elementwise, stable at lam in {0, 1}."""
    eps = 1e-12
    return lam * (torch.log(lam + eps) - math.log(lam0)) + (1 - lam) * (
        torch.log(1 - lam + eps) - math.log(1 - lam0)
    )
