"""The SDLGM, its Dis variant and the baseline against brute-force enumeration on tiny K and L0."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from model.dis import DisConfig, SDLGMDis
from model.gsvae import GSVAE, GSVAEConfig
from model.sdlgm import SDLGM, SDLGMConfig, log_likelihood
from training.evaluate import importance_nll


def _enumerate(model: SDLGM, x: torch.Tensor) -> tuple[float, float]:
    """Exact log p(x) and the exact discrete ELBO for one observation, by enumerating (w_l, z_l)."""
    cfg = model.cfg
    with torch.no_grad():
        pi = torch.softmax(model.pi_logits(x), -1)[0]
        lam = torch.softmax(model.lambda_logits(x), -1)[0, 1]
        log_px_terms, elbo = [], 0.0
        for w in itertools.product([0, 1], repeat=cfg.L0):
            for z in itertools.product(range(cfg.K), repeat=cfg.L0):
                counts = torch.zeros(1, cfg.K)
                log_p = log_q = 0.0
                for slot in range(cfg.L0):
                    counts[0, z[slot]] += w[slot]
                    pw = cfg.lambda0 if w[slot] else 1 - cfg.lambda0
                    qw = lam if w[slot] else 1 - lam
                    pi_l = pi[slot] if cfg.per_slot else pi
                    log_p += math.log(pw) - math.log(cfg.K)
                    log_q += math.log(float(qw)) + math.log(float(pi_l[z[slot]]))
                ll = float(log_likelihood(x, model.decoder(counts), cfg.likelihood, model.log_scale))
                log_px_terms.append(log_p + ll)
                elbo += math.exp(log_q) * (ll + log_p - log_q)
        return float(torch.logsumexp(torch.tensor(log_px_terms), 0)), elbo


@pytest.mark.parametrize("per_slot", [False, True])
def test_discrete_elbo_and_importance_sampling_against_enumeration(per_slot: bool) -> None:
    torch.manual_seed(0)
    model = SDLGM(SDLGMConfig(D=6, K=3, L0=2, encoder=(8,), sparsity=(8,), decoder=(8,), per_slot=per_slot))
    x = (torch.rand(1, 6) > 0.5).float()
    log_px, elbo = _enumerate(model, x)
    assert elbo <= log_px + 1e-9
    with torch.no_grad():
        hard = model(x.expand(100_000, 6), mode="hard")["elbo"]
        is_nll = importance_nll(model, x, 20_000)
    se = hard.std().item() / math.sqrt(len(hard))
    assert abs(hard.mean().item() - elbo) < 5 * se  # the model's discrete ELBO is unbiased
    assert abs(-is_nll.item() - log_px) < 0.02  # IS converges to log p(x)


def test_gsvae_importance_sampling_against_enumeration() -> None:
    torch.manual_seed(1)
    model = GSVAE(GSVAEConfig(D=5, n_vars=2, n_classes=3, encoder=(8,), decoder=(8,)))
    x = (torch.rand(1, 5) > 0.5).float()
    with torch.no_grad():
        terms = []
        for a, b in itertools.product(range(3), repeat=2):
            z = torch.zeros(1, 6)
            z[0, a], z[0, 3 + b] = 1, 1
            terms.append(float(log_likelihood(x, model.decoder(z), "bernoulli", None)) - 2 * math.log(3))
        log_px = float(torch.logsumexp(torch.tensor(terms), 0))
        assert abs(-importance_nll(model, x, 20_000).item() - log_px) < 0.02


def test_gaussian_likelihood_is_the_normal_log_density() -> None:
    x, mean, log_scale = torch.randn(3, 4), torch.randn(3, 4), torch.randn(4) * 0.3
    expected = torch.distributions.Normal(mean, log_scale.exp()).log_prob(x).sum(-1)
    assert torch.allclose(log_likelihood(x, mean, "gaussian", log_scale), expected, atol=1e-5)


def test_kl_terms_scale_with_L0_and_vanish_at_the_prior() -> None:
    model = SDLGM(SDLGMConfig(D=3, K=5, L0=7, encoder=(4,), sparsity=(4,), decoder=(4,)))
    kl_gate, kl_code = model.kl(torch.zeros(2, 5), torch.zeros(2, 2))
    assert torch.allclose(kl_gate, torch.zeros(2), atol=1e-7) and torch.allclose(kl_code, torch.zeros(2), atol=1e-6)
    kl_gate, kl_code = model.kl(torch.tensor([[9.0, 0, 0, 0, 0]]), torch.tensor([[0.0, 9.0]]))
    q = torch.softmax(torch.tensor([9.0, 0, 0, 0, 0]), -1)
    assert kl_code.item() == pytest.approx(7 * float((q * (q * 5).log()).sum()), rel=1e-5)
    lam = torch.sigmoid(torch.tensor(9.0)).item()
    kl_bern = lam * math.log(lam / 0.5) + (1 - lam) * math.log((1 - lam) / 0.5)
    assert kl_gate.item() == pytest.approx(7 * kl_bern, rel=1e-4)


def test_code_of_a_sample_has_at_most_L0_non_zeros_and_sums_to_L() -> None:
    torch.manual_seed(2)
    model = SDLGM(SDLGMConfig(D=10, K=50, L0=6, encoder=(16,), sparsity=(16,), decoder=(16,)))
    out = model(torch.randn(500, 10), mode="hard")
    assert torch.all((out["z"] > 0).sum(-1) <= 6)
    assert torch.allclose(out["z"].sum(-1), out["L"])
    L_hat, counts = model.encode(torch.randn(500, 10))
    assert torch.equal(counts.sum(-1), L_hat) and torch.all((counts > 0).sum(-1) <= 6)


def test_dis_likelihood_against_enumeration() -> None:
    torch.manual_seed(3)
    K, L0 = 3, 3
    model = SDLGMDis(DisConfig(D=4, K=K, L0=L0, encoder=(8,), sparsity=(8,)))
    x = torch.randn(1, 4)
    with torch.no_grad():
        pi = torch.softmax(model.pi_logits(x), -1)[0]
        lam = float(torch.softmax(model.lambda_logits(x), -1)[0, 1])
        prob: dict[tuple[int, ...], float] = {}
        for w in itertools.product([0, 1], repeat=L0):
            for z in itertools.product(range(K), repeat=L0):
                counts = [0] * K
                p = 1.0
                for slot in range(L0):
                    counts[z[slot]] += w[slot]
                    p *= (lam if w[slot] else 1 - lam) * float(pi[z[slot]])
                prob[tuple(counts)] = prob.get(tuple(counts), 0.0) + p
        for y in itertools.product([0, 1], repeat=K):
            got = model.log_likelihood(x, torch.tensor([y], dtype=torch.float32)).exp().item()
            assert got == pytest.approx(prob[y], rel=1e-4)
        # P(k in code) against enumeration
        p_in = [sum(v for c, v in prob.items() if c[k] > 0) for k in range(K)]
        assert model.label_probability(x)[0].tolist() == pytest.approx(p_in, rel=1e-4)


def test_dis_rejects_label_sets_larger_than_L0() -> None:
    model = SDLGMDis(DisConfig(D=2, K=4, L0=2))
    with pytest.raises(ValueError, match="larger than L0"):
        model.log_likelihood(torch.zeros(1, 2), torch.ones(1, 4))
