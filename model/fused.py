"""A fused straight-through sampler for the SDLGM's slots: the same samples and the same gradients as
`SDLGM.sample_code` in "st" mode (shared pi over the L0 slots), with less work per training step.

The model's sampler builds a (B, L0, K) autograd graph: Gumbel noise, add, divide, softmax, one-hot,
hard - y.detach() + y, multiply by w, sum over slots; each op keeps (B, L0, K) tensors for backward.
Here the forward runs without autograd and the backward is written out:
  z = sum_l w_l onehot(argmax_k (pi_k + g_lk))                       forward value, a scatter-add (B, K)
  dL/dpi = (1 / tau) sum_l w_l y_l * (G - <G, y_l>)                   y_l = softmax((pi + g_l) / tau)
         = (1 / tau) (G * (w @ y) - ((w * <G, y>) @ y))               two batched (1, L0) x (L0, K) products
  dL/dw_l = G[argmax_l]
with G = dL/dz (B, K). At tau = 1 the noise enters as y_l proportional to exp(pi) / E_l (E ~ Exp(1)), so no
log or exp is taken over (B, L0, K). The noise is drawn in the same order as the model's sampler, so
under the same seed both give the same sample (tests/test_variants.py checks values and gradients).
"""

from __future__ import annotations

from typing import Any

import torch

from model.relax import sample_one_hot


class _STSlots(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, pi_logits: torch.Tensor, w: torch.Tensor, expo: torch.Tensor,
                tau: float) -> torch.Tensor:
        # pi_logits (B, K), w (B, L0) in {0, 1}, expo (B, L0, K) ~ Exp(1)
        if tau == 1.0:
            u = torch.exp(pi_logits - pi_logits.amax(-1, keepdim=True)).unsqueeze(1) / expo  # (B, L0, K)
            y = u / u.sum(-1, keepdim=True)
        else:
            y = torch.softmax((pi_logits.unsqueeze(1) - expo.log()) / tau, dim=-1)
        idx = y.argmax(-1)  # (B, L0)
        ctx.save_for_backward(y, w, idx)
        ctx.tau = tau
        return torch.zeros_like(pi_logits).scatter_add_(1, idx, w.to(pi_logits.dtype))

    @staticmethod
    def backward(ctx: Any, grad_z: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        y, w, idx = ctx.saved_tensors
        dot = torch.bmm(y, grad_z.unsqueeze(-1)).squeeze(-1)  # (B, L0): <G, y_l>
        wy = torch.bmm(w.unsqueeze(1), y).squeeze(1)  # (B, K)
        wdy = torch.bmm((w * dot).unsqueeze(1), y).squeeze(1)
        grad_pi = (grad_z * wy - wdy) / ctx.tau
        return grad_pi, grad_z.gather(1, idx), None, None


def sample_code_fused(pi_logits: torch.Tensor, lambda_logits: torch.Tensor, tau: torch.Tensor | float,
                      tau_z: torch.Tensor | float, L0: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Straight-through z = sum_l w_l z_l (B, K) and L (B,), for shared pi (B, K); tau_z a fixed number."""
    if isinstance(tau_z, torch.Tensor):
        if tau_z.requires_grad:
            raise ValueError("the fused sampler takes a fixed slot temperature; use SDLGM.sample_code to learn it")
        tau_z = float(tau_z)
    B, K = pi_logits.shape
    w = sample_one_hot(lambda_logits.unsqueeze(1).expand(B, L0, 2), tau, "st")[..., 1]  # (B, L0)
    expo = torch.empty(B, L0, K, dtype=pi_logits.dtype).exponential_()
    z = _STSlots.apply(pi_logits, w, expo, float(tau_z))
    return z, w.sum(-1)
