"""Evaluation that tells the truth about the discrete code.

For generative models every report gives, per observation and averaged over the split (nats):
  relaxed_neg_elbo     the paper's figure: relaxed samples at the current temperatures (reported beside)
  discrete_neg_elbo    hard samples of w and z_l, exact discrete KLs: the code the service ships
  kl                   the exact KL of the discrete posterior (gate + code)
  is_nll               -log p(x) by importance sampling with S discrete samples from q (an upper bound on
                       the NLL that tightens with S)
  mode_code_recon_nll  -log p(x | z) at the deterministic code (mode of q)
  mean_L_hat, mean_nnz the deterministic code's total count and non-zeros
Gaussian data also gets the deterministic code's reconstruction RMSE in original units, per feature and
per KPI, and its normalized RMSE (RMSE / std of the training data, averaged over features).
Multi-label data gets the exact log-likelihood and micro / macro F1 at the chosen thresholds.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from model.dis import SDLGMDis
from model.gsvae import GSVAE
from model.sdlgm import SDLGM, log_likelihood
from training.bundle_eval import rmse_per_kpi
from training.tasks import Task
from training.trainer import Temperatures, standardized


def f1_scores(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Micro F1, macro F1 as the mean of per-label F1 (scikit-learn's), and macro F1 as the harmonic
    mean of macro precision and macro recall (the sparsemax paper's definition)."""
    y, pred = y.astype(bool), pred.astype(bool)
    tp = (y & pred).sum(0).astype(float)
    fp = (~y & pred).sum(0).astype(float)
    fn = (y & ~pred).sum(0).astype(float)
    micro = 2 * tp.sum() / max(2 * tp.sum() + fp.sum() + fn.sum(), 1e-12)
    denom = 2 * tp + fp + fn
    per_label = np.where(denom > 0, 2 * tp / np.maximum(denom, 1e-12), 0.0)
    prec = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1e-12), 0.0).mean()
    rec = np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1e-12), 0.0).mean()
    harmonic = 2 * prec * rec / (prec + rec) if prec + rec > 0 else 0.0
    return {"micro_f1": float(micro), "macro_f1": float(per_label.mean()), "macro_f1_harmonic": float(harmonic)}


@torch.no_grad()
def _batches(x: torch.Tensor, size: int) -> list[torch.Tensor]:
    return list(x.split(size))


@torch.no_grad()
def importance_nll(model: SDLGM | GSVAE, x: torch.Tensor, samples: int) -> torch.Tensor:
    """-log p(x) estimated with `samples` discrete samples from q; (B,)."""
    if isinstance(model, SDLGM):
        cfg = model.cfg
        pi, lam = model.pi_logits(x), model.lambda_logits(x)
        B = x.shape[0]
        p_on = torch.softmax(lam, -1)[:, 1]  # (B,)
        w = (torch.rand(samples, B, cfg.L0) < p_on[None, :, None]).float()
        probs = torch.softmax(pi, -1)
        if cfg.per_slot:
            slots = torch.multinomial(probs.reshape(-1, cfg.K), samples, replacement=True)  # (B*L0, S)
            slots = slots.view(B, cfg.L0, samples).permute(2, 0, 1)
        else:
            slots = torch.multinomial(probs, samples * cfg.L0, replacement=True).view(B, samples, cfg.L0)
            slots = slots.permute(1, 0, 2)  # (S, B, L0)
        z = torch.zeros(samples, B, cfg.K).scatter_add_(2, slots, w)
        log_w = model.log_prior_over_q(w, slots, pi, lam)
    else:
        assert isinstance(model, GSVAE)
        cfg_g = model.cfg
        lg = model.logits(x)
        B = x.shape[0]
        probs = torch.softmax(lg, -1).reshape(-1, cfg_g.n_classes)
        slots = torch.multinomial(probs, samples, replacement=True).view(B, cfg_g.n_vars, samples).permute(2, 0, 1)
        z = torch.nn.functional.one_hot(slots, cfg_g.n_classes).float().flatten(2)
        log_w = model.log_prior_over_q(slots, lg)
    out = model.decoder(z.flatten(0, 1))
    ll = log_likelihood(x.repeat(samples, 1), out, model.cfg.likelihood, model.log_scale).view(samples, -1)
    return -(torch.logsumexp(ll + log_w, 0) - math.log(samples))


@torch.no_grad()
def mode_code(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The deterministic code (z (B, K) float, L_hat (B,))."""
    if isinstance(model, SDLGM):
        L_hat, counts = model.encode(x)
        return counts.float(), L_hat.float()
    assert isinstance(model, GSVAE)
    z = model.mode_code(x)
    return z, torch.full((x.shape[0],), float(model.cfg.n_vars))


@torch.no_grad()
def evaluate(model: nn.Module, task: Task, split: str, temps: Temperatures, step: int,
             is_samples: int = 100, is_limit: int | None = None, batch: int = 500) -> dict[str, Any]:
    model.eval()
    x_raw = getattr(task, split)
    x = standardized(task, x_raw)
    if isinstance(model, SDLGMDis):
        return _evaluate_dis(model, task, split, x)
    assert isinstance(model, SDLGM | GSVAE)
    tau, tau_z = temps.value("tau", step), temps.value("tau_z", step)
    sums: dict[str, float] = {}
    recons: list[torch.Tensor] = []
    for xb in _batches(x, batch):
        relaxed = model(xb, tau, tau_z, "relaxed")
        hard = model(xb, tau, tau_z, "hard")
        z, L_hat = mode_code(model, xb)
        out = model.decoder(z)
        recons.append(out)
        parts = {
            "relaxed_neg_elbo": -relaxed["elbo"],
            "discrete_neg_elbo": -hard["elbo"],
            "discrete_recon_nll": -hard["recon"],
            "kl": hard["kl_gate"] + hard["kl_code"],
            "mode_code_recon_nll": -log_likelihood(xb, out, model.cfg.likelihood, model.log_scale),
            "mean_L_hat": L_hat,
            "mean_nnz": (z > 0).float().sum(-1),
        }
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + float(v.sum())
    n = len(x)
    result: dict[str, Any] = {k: v / n for k, v in sums.items()}
    if is_samples > 0:
        xi = x if is_limit is None else x[:is_limit]
        nll = torch.cat([importance_nll(model, xb, is_samples) for xb in _batches(xi, 100)])
        result["is_nll"] = float(nll.mean())
        result["is_samples"] = is_samples
        result["is_rows"] = len(xi)
    result["rows"] = n
    if task.likelihood == "gaussian":
        result.update(gaussian_errors(task, x_raw, torch.cat(recons).numpy()))
    return result


def gaussian_errors(task: Task, x_raw: np.ndarray, recon_std: np.ndarray) -> dict[str, Any]:
    """RMSE in original units from standardized reconstructions; per feature, per KPI and normalized."""
    recon = recon_std * task.std + task.mean
    err = (recon - x_raw) ** 2
    rmse_feature = np.sqrt(err.mean(0))
    out: dict[str, Any] = {"nrmse": float(np.sqrt((err / task.std**2).mean()))}
    if task.kpis is not None:
        out["rmse_per_kpi"] = rmse_per_kpi(err, task.kpis)
    out["rmse_mean_over_features"] = float(rmse_feature.mean())
    return out


@torch.no_grad()
def _evaluate_dis(model: SDLGMDis, task: Task, split: str, x: torch.Tensor,
                  threshold: float | None = None) -> dict[str, Any]:
    y = getattr(task, f"y_{split}")
    assert y is not None
    yt = torch.from_numpy(y.astype(np.float32))
    small = yt.sum(-1) <= model.cfg.L0
    ll = model.log_likelihood(x[small], yt[small])
    prob = model.label_probability(x).numpy()
    result: dict[str, Any] = {"nll": float(-ll.mean()), "rows": len(x)}
    if threshold is not None:
        result.update(f1_scores(y, prob >= threshold))
        result["threshold"] = threshold
    return result


def choose_threshold(model: SDLGMDis, task: Task, grid: list[float]) -> float:
    """The grid threshold with the best micro F1 on the validation split."""
    x = standardized(task, task.valid)
    prob = model.label_probability(x).numpy()
    assert task.y_valid is not None
    scores = [f1_scores(task.y_valid, prob >= t)["micro_f1"] for t in grid]
    return grid[int(np.argmax(scores))]
