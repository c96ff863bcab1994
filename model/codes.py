"""The deterministic code in torch, step for step the same as `bundle.codes` in numpy.

L_hat = min(floor((L0 + 1) * lambda), L0), the mode of Binomial(L0, lambda); counts = the exact mode of
Multinomial(L_hat, softmax(pi)) by greedy increments of argmax_k (pi_k - log(n_k + 1)), lowest index on
ties. Computed in float64 so that it agrees with numpy on the same logits.
"""

from __future__ import annotations

import torch


def binomial_mode(lam: torch.Tensor, L0: int) -> torch.Tensor:
    return torch.clamp(torch.floor((L0 + 1) * lam.double()), max=L0).long()


def multinomial_mode(logits: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """(B, K) logits (or (B, L0, K) per-slot), (B,) totals -> (B, K) int64 counts."""
    lg = logits.double()
    B = lg.shape[0]
    rows = torch.arange(B)
    K = lg.shape[-1]
    counts = torch.zeros(B, K, dtype=torch.long)
    if lg.dim() == 3:
        best = lg.argmax(-1)  # (B, L0)
        for slot in range(lg.shape[1]):
            active = slot < n
            counts[rows[active], best[active, slot]] += 1
        return counts
    for step in range(int(n.max().item()) if n.numel() else 0):
        gain = lg - torch.log(counts.double() + 1.0)
        k = gain.argmax(-1)
        active = step < n
        counts[rows[active], k[active]] += 1
    return counts


def gate_probability(lambda_logits: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """(B, 2) logits (off, on) -> (B,) lambda = sigmoid(on - off), the one rule for the gate probability.
    Computed in float64 by default, as bundle.codes does (the code must agree with numpy's); the models'
    label probabilities and importance samples ask for their own dtype."""
    lg = lambda_logits.to(dtype)
    return torch.sigmoid(lg[:, 1] - lg[:, 0])


def deterministic_code(pi_logits: torch.Tensor, lambda_logits: torch.Tensor, L0: int) -> tuple[torch.Tensor, torch.Tensor]:
    L_hat = binomial_mode(gate_probability(lambda_logits), L0)
    return L_hat, multinomial_mode(pi_logits, L_hat)


def slot_mode(slot_logits: torch.Tensor) -> torch.Tensor:
    """(B, L0, A) per-slot logits -> (B, L0) each slot's most likely symbol (lowest on ties), as numpy's."""
    return slot_logits.double().argmax(-1)


def slot_counts(symbols: torch.Tensor, block: int) -> torch.Tensor:
    """(B, L0) symbols of self-gating slots (block = "off") -> (B, L0 * block) 0/1 int64 counts."""
    B, L0 = symbols.shape
    onehot = torch.zeros(B, L0, block + 1, dtype=torch.long).scatter_(2, symbols.unsqueeze(-1), 1)
    return onehot[..., :block].flatten(1)
