"""The supervised variants' losses against brute-force enumeration on tiny K, and the fused
straight-through sampler against the model's own (same samples, same gradients)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch

from model.con import ConConfig, SDLGMCon
from model.family import Batch
from model.fused import sample_code_fused
from model.gen import GenConfig, SDLGMGen, log_code_prior
from model.relax import exponential_like, gumbel_like
from model.sdlgm import SDLGM, SDLGMConfig, sample_code_autograd


def _code_law(K: int, L0: int, lam: float, pi: list[float]) -> dict[tuple[int, ...], float]:
    """P(z = c) for z = sum_l w_l e_{s_l}, w_l ~ Bern(lam), s_l ~ Cat(pi), by enumeration."""
    law: dict[tuple[int, ...], float] = {}
    for w in itertools.product((0, 1), repeat=L0):
        for s in itertools.product(range(K), repeat=L0):
            c, p = [0] * K, 1.0
            for wl, sl in zip(w, s, strict=True):
                p *= (lam if wl else 1 - lam) * pi[sl]
                c[sl] += wl
            law[tuple(c)] = law.get(tuple(c), 0.0) + p
    return law


@pytest.mark.parametrize(("K", "L0", "lambda0"), [(3, 2, 0.5), (4, 3, 0.3)])
def test_gen_prior_matches_brute_force(K: int, L0: int, lambda0: float) -> None:
    law = _code_law(K, L0, lambda0, [1 / K] * K)
    binary = [c for c in law if max(c) <= 1]
    y = torch.tensor(binary, dtype=torch.float64)
    got = log_code_prior(y, L0, lambda0).exp()
    assert torch.allclose(got, torch.tensor([law[c] for c in binary], dtype=torch.float64), atol=1e-12)


def test_gen_loss_is_minus_log_joint_minus_alpha_log_q() -> None:
    torch.manual_seed(0)
    K, L0 = 3, 2
    model = SDLGMGen(GenConfig(D=4, K=K, L0=L0, encoder=(5,), sparsity=(5,), decoder=(5,), alpha=2.5)).double()
    x = torch.randn(1, 4, dtype=torch.float64)
    lam = float(torch.softmax(model.dis.lambda_logits(x), -1)[0, 1])
    pi = torch.softmax(model.dis.pi_logits(x), -1)[0].tolist()
    law_q = _code_law(K, L0, lam, pi)
    for c in law_q:
        if max(c) > 1:
            continue
        y = torch.tensor([c], dtype=torch.float64)
        out = model.decoder(y)
        scale = model.log_scale
        log_px = torch.distributions.Normal(out, scale.exp()).log_prob(x).sum()
        log_py = torch.log(torch.tensor(_code_law(K, L0, 0.5, [1 / K] * K)[c], dtype=torch.float64))
        want = -(log_px + log_py) - 2.5 * torch.log(torch.tensor(law_q[c], dtype=torch.float64))
        # model.dis.log_binomial takes lgamma(L0 + 1) in float32: agreement to 1e-6, not 1e-12
        assert float(model.loss(Batch(x, y))["objective"][0]) == pytest.approx(float(want), abs=1e-6)


@pytest.mark.parametrize("tau_z", [1.0, 0.6])
def test_fused_sampler_gives_the_same_samples_and_gradients(tau_z: float) -> None:
    model = SDLGM(SDLGMConfig(D=12, K=9, L0=6, encoder=(10,), sparsity=(6,), decoder=(10,))).double()
    x = torch.randn(5, 12, dtype=torch.float64)
    results = []
    samplers = {
        "autograd": lambda pi, lam: sample_code_autograd(pi, lam, 0.8, tau_z, "st", 6),
        "fused": lambda pi, lam: sample_code_fused(pi, lam, 0.8, tau_z, 6),
        "model": lambda pi, lam: model.sample_code(pi, lam, 0.8, tau_z, "st"),
    }
    for sampler in samplers.values():
        model.zero_grad()
        torch.manual_seed(7)
        pi, lam = model.pi_logits(x), model.lambda_logits(x)
        z, L = sampler(pi, lam)
        (model.decoder(z).tanh().sum() + (L * 0.3).sum()).backward()
        results.append((z.detach(), L.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    z0, L0_, g0 = results[0]
    assert float(L0_.min()) < float(L0_.max()) and int((z0 > 0).sum()) > 5  # a sample with some spread
    for z1, L1, g1 in results[1:]:
        assert torch.allclose(z0, z1, atol=1e-12) and torch.equal(L0_, L1)
        assert len(g0) == len(g1) and all(torch.allclose(a, b, atol=1e-10) for a, b in zip(g0, g1, strict=True))


def test_model_sampler_takes_the_fused_path_for_straight_through(monkeypatch: pytest.MonkeyPatch) -> None:
    import model.sdlgm

    calls: list[int] = []

    def spy(*args: object) -> tuple[torch.Tensor, torch.Tensor]:
        calls.append(1)
        return sample_code_fused(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(model.sdlgm, "sample_code_fused", spy)
    m = SDLGM(SDLGMConfig(D=4, K=5, L0=3, encoder=(6,), sparsity=(4,), decoder=(6,)))
    pi, lam = torch.randn(2, 5), torch.randn(2, 2)
    m.sample_code(pi, lam, 1.0, 1.0, "st")
    assert calls == [1]
    m.sample_code(pi, lam, 1.0, 1.0, "relaxed")
    m.sample_code(pi, lam, 1.0, 1.0, "hard")
    assert calls == [1]  # relaxed and hard samples take the autograd path


def test_model_sampler_takes_the_autograd_path_for_a_learned_slot_temperature() -> None:
    model = SDLGM(SDLGMConfig(D=4, K=5, L0=3, encoder=(6,), sparsity=(4,), decoder=(6,)))
    tau = torch.tensor(0.7, requires_grad=True)
    pi, lam = torch.randn(2, 5), torch.randn(2, 2)
    z, _ = model.sample_code(pi, lam, 1.0, tau, "st")
    z.sum().backward()
    assert tau.grad is not None  # the fused sampler would have refused a learned temperature


def test_exponential_noise_is_finite_positive_and_unit_mean() -> None:
    torch.manual_seed(0)
    e = exponential_like(torch.empty(200_000))
    assert bool(torch.isfinite(e).all()) and float(e.min()) > 0
    assert float(e.mean()) == pytest.approx(1.0, abs=0.01) and float(e.var()) == pytest.approx(1.0, abs=0.02)
    g = gumbel_like(torch.empty(200_000, dtype=torch.float64))
    assert float(g.mean()) == pytest.approx(0.5772, abs=0.01)  # the Euler-Mascheroni constant


def test_fused_sampler_draws_its_noise_on_the_logits_device() -> None:
    # the meta device stands in for a GPU: noise drawn on the CPU would not mix with it
    pi = torch.zeros(3, 5, device="meta", requires_grad=True)
    z, L = sample_code_fused(pi, torch.zeros(3, 2, device="meta"), 1.0, 1.0, 4)
    z.sum().backward()
    assert z.device.type == L.device.type == "meta" and pi.grad is not None and pi.grad.device.type == "meta"


def test_fused_sampler_refuses_a_learned_slot_temperature() -> None:
    tau = torch.tensor(1.0, requires_grad=True)
    with pytest.raises(ValueError, match="fixed slot temperature"):
        sample_code_fused(torch.zeros(2, 3), torch.zeros(2, 2), 1.0, tau, 2)


def test_timing_and_figures_quick_runs(tmp_path: Path) -> None:
    import figures
    import timing

    assert timing.main(["--quick", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "timing.json").read_text())
    assert {"SDLGM", "GS-VAE 20x10"} <= {r["method"] for r in rows}
    assert all(r["ms_per_iter"] > 0 for r in rows if r["ms_per_iter"] is not None)
    assert figures.main(["--quick", "--out", str(tmp_path), "--runs", str(tmp_path / "run")]) == 0
    for name in ("fig3_reconstructions.png", "fig4_latent.png", "fig5_label_counts.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_con_loss_is_an_unbiased_estimate_of_its_exact_expectation() -> None:
    """E_q(z)[loss] by enumerating the code law of q(z | x) (tiny Kz, L0z) against the mean of many
    single-sample losses, within 5 standard errors (seeded)."""
    torch.manual_seed(0)
    cfg = ConConfig(D=3, K=3, L0=2, Kz=2, L0z=2, encoder=(6,), decoder=(6,), alpha=1.5)
    model = SDLGMCon(cfg).double()
    x = torch.randn(1, 3, dtype=torch.float64)
    y = torch.tensor([[1.0, 0.0, 1.0]], dtype=torch.float64)
    with torch.no_grad():
        pi_z, lam_z = model.z_logits(x)
        law = _code_law(cfg.Kz, cfg.L0z, float(torch.softmax(lam_z, -1)[0, 1]), torch.softmax(pi_z, -1)[0].tolist())
        exact_recon = sum(p * float(model.recon(x, y, torch.tensor([c], dtype=torch.float64))) for c, p in law.items())
        rest = (-log_code_prior(y, cfg.L0, cfg.lambda0) + model.kl_z(pi_z, lam_z)
                - cfg.alpha * model.dis.log_likelihood(x, y))
        exact = -exact_recon + float(rest)
        samples = torch.stack([model.loss(Batch(x, y))["objective"][0] for _ in range(1000)])
    se = float(samples.std()) / 1000**0.5
    assert abs(float(samples.mean()) - exact) < 5 * se + 1e-9
