"""The SDLGM options of the Table I and KPI studies (model/sdlgm.py, model/relax.py, training/trainer.py):
the gate in the slot with its learned prior, the gated KL, the Gumbel-Rao estimator, the KL warm-up, the
Gaussian scale (per feature, shared or fixed) and the codebook-usage term. Each test
fails without its option. Seeding: every statistical test seeds torch; tolerances are 5 standard errors."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bundle.runtime import open_bundle
from model import registry
from model.family import Batch, DataShape
from model.relax import gumbel_rao, kl_categorical, sample_one_hot
from model.sdlgm import SDLGM, SDLGMConfig
from training.export import export_bundle
from training.trainer import kl_weight


def slot_model(**kw: object) -> SDLGM:
    torch.manual_seed(0)
    opts = {"K": 6, "L0": 3, "encoder": [8], "decoder": [8], "gate": "slot", **kw}
    return registry.family("sdlgm").build(DataShape(D=5), **opts)


def test_gate_slot_kl_is_the_exact_kl_of_each_slots_categorical_against_its_prior() -> None:
    m = slot_model()
    x = (torch.rand(4, 5) > 0.5).float()
    pi = m.pi_logits(x)  # (B, L0, m + 1): 3 slots over {2 categories, off}
    assert pi.shape == (4, 3, 3)
    prior = torch.tensor([0.25, 0.25, 0.5])  # lambda0 = 0.5 split over the block, 1 - lambda0 off
    q = torch.softmax(pi, -1)
    brute = (q * (q.log() - prior.log())).sum(-1).sum(-1)  # sum over slots
    _, kl = m.kl(pi, m.lambda_logits(x))
    assert torch.allclose(kl, brute, atol=1e-6)


def test_gate_slot_importance_weights_sum_to_one_over_every_code() -> None:
    """E_q[p(z) / q(z)] = 1: enumerate all (m + 1)^L0 codes of a tiny model against its importance weights."""
    m = slot_model(learned_prior=True)
    with torch.no_grad():
        m.prior_logits.add_(torch.randn_like(m.prior_logits))
    x = (torch.rand(1, 5) > 0.5).float()
    q = F.log_softmax(m.pi_logits(x), -1)[0]  # (L0, 3)
    p = m.log_prior().detach()
    total = sum(math.exp(sum(float(p[s, v]) for s, v in enumerate(code))) for code in itertools.product(range(3), repeat=3))
    assert total == pytest.approx(1.0, abs=1e-5)
    torch.manual_seed(1)
    z, log_w = m.importance_samples(x, 4000)
    assert set(z.sum(-1).unique().tolist()) <= {0.0, 1.0, 2.0, 3.0}
    assert (z.view(4000, 1, 3, 2).sum(-1) <= 1).all()  # at most one category per block
    w = log_w.exp()
    assert abs(float(w.mean()) - 1.0) < 5 * float(w.std()) / math.sqrt(4000)
    # and a sampled code's weight is p(code) / q(code)
    sym = torch.where(z[0, 0].view(3, 2).sum(-1) > 0, z[0, 0].view(3, 2).argmax(-1), torch.tensor(2))
    expect = float(sum(p[s, v] - q[s, v] for s, v in enumerate(sym.tolist())))
    assert float(log_w[0, 0]) == pytest.approx(expect, abs=1e-5)


def test_a_learned_prior_is_a_parameter_the_loss_moves_and_a_fixed_one_is_not() -> None:
    fixed, learned = slot_model(), slot_model(learned_prior=True)
    assert "prior_logits" not in dict(fixed.named_parameters())
    assert "prior_logits" in dict(learned.named_parameters())
    x = (torch.rand(16, 5) > 0.5).float()
    learned.loss(Batch(x))["loss"].backward()
    assert learned.prior_logits.grad is not None and learned.prior_logits.grad.abs().sum() > 0


def test_gate_slot_code_is_each_slots_argmax_and_the_bundle_serves_it(tmp_path: Path) -> None:
    m = slot_model(learned_prior=True)
    x = (torch.rand(32, 5) > 0.5).float()
    L, counts = m.encode(x)
    best = m.pi_logits(x).argmax(-1)  # (B, L0); 2 = off
    expect = torch.zeros(32, 6, dtype=torch.long)
    for b, s in itertools.product(range(32), range(3)):
        if best[b, s] < 2:
            expect[b, 2 * s + best[b, s]] = 1
    assert torch.equal(counts, expect) and torch.equal(L, expect.sum(1))
    man = export_bundle(m, tmp_path, "slot", "1", [f"f{i}" for i in range(5)], x.numpy(), probe=x.numpy())
    assert man.gate == "slot" and man.partitions == 3 and man.graphs.sparsity is None
    rt = open_bundle(tmp_path)
    assert np.array_equal(rt.encode(x.numpy())[1], counts.numpy())


def test_gated_kl_charges_the_code_kl_of_on_slots_only() -> None:
    torch.manual_seed(0)
    plain = registry.family("sdlgm").build(DataShape(D=5), K=7, L0=4, encoder=[8], sparsity=[8], decoder=[8])
    gated = SDLGM(SDLGMConfig(**{**plain.cfg.__dict__, "gated_kl": True}))
    gated.load_state_dict(plain.state_dict())
    x = (torch.rand(8, 5) > 0.5).float()
    pi, lam_logits = plain.pi_logits(x), plain.lambda_logits(x)
    lam = torch.sigmoid(lam_logits[:, 1] - lam_logits[:, 0])
    g0, c0 = plain.kl(pi, lam_logits)
    g1, c1 = gated.kl(pi, lam_logits)
    assert torch.allclose(g0, g1) and torch.allclose(c1, lam * c0, atol=1e-6) and (c1 < c0).all()
    # the importance weights of the gated posterior: off slots contribute nothing beyond their gate
    torch.manual_seed(2)
    _, log_w = gated.importance_samples(x[:1], 20_000)
    w = log_w.exp()
    assert abs(float(w.mean()) - 1.0) < 5 * float(w.std()) / math.sqrt(20_000)


def test_gumbel_rao_forward_is_a_categorical_sample_and_its_gradient_has_less_variance() -> None:
    torch.manual_seed(0)
    logits = torch.tensor([0.5, -1.0, 1.5, 0.0])
    p = torch.softmax(logits, -1)
    hard = gumbel_rao(logits.expand(100_000, 4), 0.5, 4).detach()
    assert torch.equal(hard.sum(-1), torch.ones(100_000)) and set(hard.unique().tolist()) == {0.0, 1.0}
    freq = hard.mean(0)
    assert (freq - p).abs().max() < 5 * (p * (1 - p) / 100_000).sqrt().max()
    weights = torch.tensor([1.0, -2.0, 0.5, 3.0])

    def grads(mode: str) -> torch.Tensor:
        out = []
        for _ in range(400):
            lg = logits.clone().requires_grad_(True)
            (sample_one_hot(lg, 0.5, mode) * weights).sum().backward()  # type: ignore[arg-type]
            assert lg.grad is not None
            out.append(lg.grad.clone())
        return torch.stack(out)

    st, gr = grads("st"), grads("gr")
    assert gr.var(0).sum() < 0.7 * st.var(0).sum()  # Rao-Blackwellised: a lower-variance gradient
    assert (gr.mean(0) - st.mean(0)).abs().max() < 5 * (st.std(0) / math.sqrt(400)).max()  # the same mean


def test_kl_categorical_against_a_prior_matches_monte_carlo() -> None:
    torch.manual_seed(3)
    logits, prior = torch.randn(5), F.log_softmax(torch.randn(5), -1)
    q = torch.softmax(logits, -1)
    idx = torch.multinomial(q, 200_000, replacement=True)
    ratio = q.log()[idx] - prior[idx]
    assert abs(float(kl_categorical(logits, prior)) - float(ratio.mean())) < 5 * float(ratio.std()) / math.sqrt(2e5)


def test_kl_warmup_weights_the_kl_in_the_loss_only() -> None:
    assert [kl_weight(0, s) for s in (0, 5)] == [1.0, 1.0]
    assert [kl_weight(4, s) for s in (0, 1, 3, 10)] == [0.25, 0.5, 1.0, 1.0]
    m = slot_model()
    x = (torch.rand(16, 5) > 0.5).float()
    torch.manual_seed(5)
    full = m.loss(Batch(x, mode="hard"))
    torch.manual_seed(5)
    none = m.loss(Batch(x, mode="hard", beta=0.0))
    assert torch.allclose(full["elbo"], none["elbo"])  # the ELBO itself is unchanged
    assert float(none["loss"]) == pytest.approx(-float(none["recon"].mean()), rel=1e-6)
    assert float(full["loss"]) == pytest.approx(-float(full["elbo"].mean()), rel=1e-6)


def test_gate_slot_refuses_a_misfit_config() -> None:
    with pytest.raises(ValueError, match="divide K"):
        SDLGMConfig(D=3, K=7, L0=3, gate="slot")
    with pytest.raises(ValueError, match="learned_prior"):
        SDLGMConfig(D=3, K=6, L0=3, learned_prior=True)


@pytest.mark.parametrize(("scale", "params"), [("feature", 5), ("shared", 1), ("fixed", 0)])
def test_the_gaussian_scale_is_learned_per_feature_shared_or_fixed(scale: str, params: int) -> None:
    torch.manual_seed(0)
    m = registry.family("sdlgm").build(DataShape(D=5, likelihood="gaussian"), K=6, L0=2, encoder=[8], sparsity=[8],
                                       decoder=[8], scale=scale, sigma=0.5)
    m.x_std.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]))
    learned = dict(m.named_parameters()).get("log_scale")
    assert (0 if learned is None else learned.numel()) == params
    x = torch.randn(16, 5)
    out = m(x, mode="hard")
    expect = 0.5 if scale == "fixed" else 1.0  # a learned scale starts at 1 (log 0)
    assert m.decoder_scale() == pytest.approx([expect * s for s in (1, 2, 3, 4, 5)])
    residual = x - m.decoder(out["z"])
    ll = (-0.5 * (residual / expect) ** 2 - math.log(expect) - 0.5 * math.log(2 * math.pi)).sum(-1)
    assert torch.allclose(out["recon"], ll, atol=1e-5)


def test_the_usage_term_is_zero_for_even_use_and_enters_the_loss() -> None:
    torch.manual_seed(0)
    m = registry.family("sdlgm").build(DataShape(D=5), K=4, L0=2, encoder=[8], sparsity=[8], decoder=[8],
                                       usage_weight=2.0)
    x = (torch.rand(16, 5) > 0.5).float()
    with torch.no_grad():
        last = m.encoder[-1]
        assert isinstance(last, torch.nn.Linear)
        last.weight.zero_()
        last.bias.zero_()  # pi uniform for every row: even use
        assert float(m.usage_penalty(x)) == pytest.approx(0.0, abs=1e-7)
        last.bias.copy_(torch.tensor([9.0, 0.0, 0.0, 0.0]))  # every row on category 0: collapse
        assert float(m.usage_penalty(x)) > 0.9 * math.log(4)
    without = SDLGM(SDLGMConfig(**{**m.cfg.__dict__, "usage_weight": 0.0}))
    without.load_state_dict(m.state_dict())
    torch.manual_seed(1)
    with_term = m.loss(Batch(x, mode="hard"))
    torch.manual_seed(1)
    plain = without.loss(Batch(x, mode="hard"))
    assert float(with_term["loss"] - plain["loss"]) == pytest.approx(2.0 * float(m.usage_penalty(x)), rel=1e-5)
