"""The gate and slot temperatures (tau, tau_z) of the Gumbel-softmax samples as functions of the step:
fixed, annealed, or learned (then they are parameters the optimizer updates)."""

from __future__ import annotations

import math

import torch
from torch import nn

from training.config import Temperature


class Temperatures(nn.Module):
    """tau (gates) and tau_z (slots) as functions of the iteration; learned ones are parameters."""

    specs: dict[str, Temperature]
    log_tau: nn.ParameterDict

    def __init__(self, tau: Temperature, tau_z: Temperature) -> None:
        super().__init__()
        self.specs = {"tau": tau, "tau_z": tau_z}
        self.log_tau = nn.ParameterDict(
            {k: nn.Parameter(torch.tensor(math.log(s.tau0))) for k, s in self.specs.items() if s.kind == "learned"}
        )

    def value(self, which: str, step: int) -> torch.Tensor | float:
        s = self.specs[which]
        if s.kind == "learned":
            return self.log_tau[which].exp()
        if s.kind == "anneal":
            return max(s.tau_min, s.tau0 * math.exp(-s.rate * step))
        return s.tau0

    def current(self, step: int) -> dict[str, float]:
        return {k: float(self.value(k, step)) for k in self.specs}
