"""A fused straight-through sampler for the SDLGM's slots: the same samples and the same gradients as
`model.sdlgm.sample_code_autograd` in "st" mode (shared pi over the L0 slots), with less work per training
step. `SDLGM.sample_code` uses it whenever it applies (st, shared pi, a fixed slot temperature).

The autograd sampler builds a (B, L0, K) graph: Gumbel noise, add, divide, softmax, one-hot,
hard - y.detach() + y, multiply by w, sum over slots; each op keeps (B, L0, K) tensors for backward.
Here the forward runs without autograd and the backward is written out:
  z = sum_l w_l onehot(argmax_k (pi_k + g_lk))                       forward value, a scatter-add (B, K)
  dL/dpi = (1 / tau) sum_l w_l y_l * (G - <G, y_l>)                   y_l = softmax((pi + g_l) / tau)
         = (1 / tau) (G * (w @ y) - ((w * <G, y>) @ y))               one batched (2, L0) x (L0, K) product
  dL/dw_l = G[argmax_l]
with G = dL/dz (B, K). At tau = 1 the noise enters as y_l proportional to exp(pi) / E_l with E = -log U ~
Exp(1): over (B, L0, K) there is one uniform draw, one log and one division, and y_l is never normalized
(its row sums rescale the backward's coefficients instead). The noise is drawn in the same order and
the same way as by the autograd sampler (model.relax.gumbel_like), so under the same seed both give the
same sample (tests/test_variants.py checks values and gradients).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.autograd.function import once_differentiable

from model.relax import log_uniform_like, sample_one_hot


class _STSlots(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, pi_logits: torch.Tensor, w: torch.Tensor, log_u: torch.Tensor,
                tau: float) -> torch.Tensor:
        # pi_logits (B, K), w (B, L0) in {0, 1}, log_u (B, L0, K) = log U < 0, U ~ Uniform(0, 1): -log_u ~ Exp(1)
        # is the Gumbel noise's exp(-g), and the slot's softmax y_l = u_l / s_l for the u below
        if tau == 1.0:
            # u = exp(pi) / log_u is negative and proportional to y; the one division is the only pass
            u = torch.exp(pi_logits - pi_logits.amax(-1, keepdim=True)).unsqueeze(1) / log_u
        else:
            u = torch.softmax((pi_logits.unsqueeze(1) - (-log_u).log()) / tau, dim=-1)
        s = u.sum(-1)  # (B, L0): y_l = u_l / s_l, never formed
        idx = u.argmin(-1) if tau == 1.0 else u.argmax(-1)  # (B, L0): the largest y_l
        ctx.save_for_backward(u, s, w, idx)
        ctx.tau = tau
        return torch.zeros_like(pi_logits).scatter_add_(1, idx, w.to(pi_logits.dtype))

    @staticmethod
    @once_differentiable  # the written-out backward is not itself differentiable
    def backward(ctx: Any, grad_z: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        u, s, w, idx = ctx.saved_tensors
        dot = torch.bmm(u, grad_z.unsqueeze(-1)).squeeze(-1) / s  # (B, L0): <G, y_l>
        coef = torch.stack((w / s, w * dot / s), dim=1)  # (B, 2, L0)
        wy, wdy = torch.bmm(coef, u).unbind(1)  # (B, K) each: sum_l w_l y_l, sum_l w_l <G, y_l> y_l
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
    log_u = log_uniform_like(pi_logits.new_empty(B, L0, K))  # the noise model.relax.gumbel_like draws
    z = _STSlots.apply(pi_logits, w, log_u, float(tau_z))
    return z, w.sum(-1)
