"""Math of the relaxations and KLs against Monte Carlo, with tolerances from the sample size.

Seeding policy: every statistical test seeds torch itself; tolerances are 5 standard errors."""

from __future__ import annotations

import math

import pytest
import torch

from model.relax import gumbel_like, kl_bernoulli, kl_categorical_uniform, sample_one_hot


def test_gumbel_noise_moments() -> None:
    torch.manual_seed(0)
    g = gumbel_like(torch.zeros(400_000))
    se = math.sqrt(math.pi**2 / 6 / 400_000)
    assert abs(g.mean().item() - 0.5772156649) < 5 * se
    assert abs(g.var().item() - math.pi**2 / 6) < 0.02


def test_kl_categorical_matches_monte_carlo() -> None:
    torch.manual_seed(1)
    logits = torch.randn(7) * 2
    p = torch.softmax(logits, -1)
    idx = torch.multinomial(p, 200_000, replacement=True)
    samples = torch.log(p[idx]) + math.log(7)  # log q(z) - log p(z) with a uniform prior
    mc, se = samples.mean().item(), samples.std().item() / math.sqrt(len(samples))
    assert abs(kl_categorical_uniform(logits).item() - mc) < 5 * se


@pytest.mark.parametrize("lam, lam0", [(0.1, 0.5), (0.8, 0.5), (0.3, 0.2), (0.999, 0.5)])
def test_kl_bernoulli_matches_monte_carlo(lam: float, lam0: float) -> None:
    torch.manual_seed(2)
    w = torch.rand(200_000) < lam
    ratio = torch.where(w, math.log(lam) - math.log(lam0), math.log(1 - lam) - math.log(1 - lam0))
    mc, se = ratio.mean().item(), ratio.std().item() / math.sqrt(len(ratio))
    assert abs(kl_bernoulli(torch.tensor(lam), lam0).item() - mc) < 5 * se + 1e-6


def test_kl_bernoulli_is_zero_at_the_prior_and_finite_at_the_edges() -> None:
    assert kl_bernoulli(torch.tensor(0.5), 0.5).item() == pytest.approx(0.0, abs=1e-9)
    assert kl_bernoulli(torch.tensor(1.0), 0.5).item() == pytest.approx(math.log(2), abs=1e-6)
    assert kl_bernoulli(torch.tensor(0.0), 0.5).item() == pytest.approx(math.log(2), abs=1e-6)


def test_relaxed_samples_approach_one_hot_with_the_categorical_frequencies() -> None:
    torch.manual_seed(3)
    logits = torch.tensor([1.0, 0.0, -1.0, 0.5])
    p = torch.softmax(logits, -1)
    n = 100_000
    batch = logits.expand(n, 4)
    for tau, min_max in [(1.0, 0.5), (0.1, 0.93), (0.01, 0.99)]:
        y = sample_one_hot(batch, tau, "relaxed")
        assert torch.allclose(y.sum(-1), torch.ones(n), atol=1e-5)
        assert y.max(-1).values.mean().item() > min_max  # sharper as tau -> 0
    freq = torch.bincount(y.argmax(-1), minlength=4).float() / n
    se = torch.sqrt(p * (1 - p) / n)
    assert torch.all((freq - p).abs() < 5 * se)


def test_hard_and_straight_through_samples_are_one_hot_with_gradients_only_through_st() -> None:
    torch.manual_seed(4)
    logits = torch.randn(1000, 5, requires_grad=True)
    st = sample_one_hot(logits, 1.0, "st")
    assert torch.equal(st.detach().sum(-1), torch.ones(1000))
    assert set(st.detach().unique().tolist()) == {0.0, 1.0}
    (st * torch.arange(5.0)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    hard = sample_one_hot(logits.detach(), 1.0, "hard")
    assert set(hard.unique().tolist()) == {0.0, 1.0}
