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
Multi-label data gets the exact log-likelihood and micro / macro F1 at the chosen thresholds; count data
the count likelihood and the deterministic code's count errors. What is evaluated follows the model
family's targets (`model.family.Family.targets`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from model import registry
from model.family import Batch, Generative, SparseModel, Supervised
from training.bundle_eval import f1_scores, rmse_per_kpi
from training.tasks import Task, standardized, targets
from training.temperatures import Temperatures


@torch.no_grad()
def _batches(x: torch.Tensor, size: int) -> list[torch.Tensor]:
    return list(x.split(size))


def evaluation_rows(n: int, rows: int | None, seed: int) -> np.ndarray:
    """Indices of the rows an expensive estimate runs on: all n, or a seeded uniform sample of `rows`
    without replacement (sorted). Never the head of the split: test files are often grouped (the
    binarized MNIST test set by digit), and their first rows are not a sample of the whole."""
    if rows is None or rows >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=rows, replace=False))


@torch.no_grad()
def importance_nll(model: Generative, x: torch.Tensor, samples: int) -> torch.Tensor:
    """-log p(x) estimated with `samples` discrete samples from q; (B,)."""
    z, log_w = model.importance_samples(x, samples)
    out = model.decode_out(z.flatten(0, 1))
    ll = model.recon_log_likelihood(x.repeat(samples, 1), out).view(samples, -1)
    return -(torch.logsumexp(ll + log_w, 0) - math.log(samples))


@torch.no_grad()
def evaluate(model: SparseModel, task: Task, split: str, temps: Temperatures, step: int,
             is_samples: int = 100, is_rows: int | None = None, is_seed: int = 0, batch: int = 500,
             threshold_grid: list[float] | None = None) -> dict[str, Any]:
    """The figures of the module docstring on one split; label models also get F1 at the grid threshold
    with the best validation micro F1 when a grid is given."""
    model.eval()
    family = registry.family_of(model)
    if family.targets == "labels":
        threshold = choose_threshold(family.of(model), task, threshold_grid) if threshold_grid else None
        return evaluate_labels(family.of(model), task, split, threshold)
    if family.targets == "counts":
        return evaluate_counts(model, task, split, batch)
    return evaluate_generative(family.of(model), task, split, temps, step, is_samples, is_rows, is_seed,
                               batch)


@torch.no_grad()
def evaluate_generative(model: Generative, task: Task, split: str, temps: Temperatures, step: int,
                        is_samples: int = 100, is_rows: int | None = None, is_seed: int = 0,
                        batch: int = 500) -> dict[str, Any]:
    """The figures of one split. The samples (the relaxed and hard ELBOs', the importance sampler's) are
    drawn from torch's generator seeded with is_seed inside a fork of its state: the same model gives the
    same figures every time, and an evaluation during training leaves the training's random stream as it was."""
    with torch.random.fork_rng():
        torch.manual_seed(is_seed)
        return _evaluate_generative(model, task, split, temps, step, is_samples, is_rows, is_seed, batch)


def _evaluate_generative(model: Generative, task: Task, split: str, temps: Temperatures, step: int,
                         is_samples: int, is_rows: int | None, is_seed: int, batch: int) -> dict[str, Any]:
    x_raw = getattr(task, split)
    x = standardized(task, x_raw)
    tau, tau_z = temps.value("tau", step), temps.value("tau_z", step)
    sums: dict[str, float] = {}
    recons: list[torch.Tensor] = []
    for xb in _batches(x, batch):
        relaxed = model(xb, tau, tau_z, "relaxed")
        hard = model(xb, tau, tau_z, "hard")
        L_hat, counts = model.encode(xb)
        z = counts.float()
        out = model.decode_out(z)
        recons.append(out)
        parts = {
            "relaxed_neg_elbo": -relaxed["elbo"],
            "discrete_neg_elbo": -hard["elbo"],
            "discrete_recon_nll": -hard["recon"],
            "kl": hard["kl_gate"] + hard["kl_code"],
            "mode_code_recon_nll": -model.recon_log_likelihood(xb, out),
            "mean_L_hat": L_hat.float(),
            "mean_nnz": (z > 0).float().sum(-1),
        }
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + float(v.sum())
    n = len(x)
    result: dict[str, Any] = {k: v / n for k, v in sums.items()}
    if is_samples > 0:
        rows = evaluation_rows(n, is_rows, is_seed)
        nll = torch.cat([importance_nll(model, xb, is_samples) for xb in _batches(x[rows], 100)]).double()
        result["is_nll"] = float(nll.mean())
        result["is_nll_se"] = float(nll.std() / math.sqrt(len(nll))) if len(nll) > 1 else float("nan")
        result["is_samples"] = is_samples
        result["is_rows"] = len(rows)
        result["is_subset"] = "all" if len(rows) == n else f"uniform random, seed {is_seed}"
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
def evaluate_labels(model: Supervised, task: Task, split: str, threshold: float | None = None) -> dict[str, Any]:
    """-log q(y | x) on the rows with at most L0 labels, and F1 at the threshold when one is given."""
    model.eval()
    x = standardized(task, getattr(task, split))
    y = getattr(task, f"y_{split}")
    yt = targets(task, split)
    assert y is not None and yt is not None
    small = yt.sum(-1) <= model.cfg.L0
    ll = model.label_log_likelihood(x[small], yt[small])
    prob = model.label_probability(x).numpy()
    result: dict[str, Any] = {"nll": float(-ll.mean()), "rows": len(x)}
    if threshold is not None:
        result.update(f1_scores(y, prob >= threshold))
        result["threshold"] = threshold
    return result


@torch.no_grad()
def evaluate_counts(model: SparseModel, task: Task, split: str, batch: int = 500) -> dict[str, Any]:
    """-log q(c | x), and the deterministic code's squared error and exact-count accuracy against c."""
    model.eval()
    x, c = standardized(task, getattr(task, split)), targets(task, split)
    assert c is not None
    nll = torch.cat([model.loss(Batch(xb, cb))["nll"] for xb, cb in zip(x.split(batch), c.split(batch), strict=True)])
    pred = torch.cat([model.encode(xb)[1] for xb in x.split(batch)]).double()
    target = c.double()
    return {"nll": float(nll.mean()), "mse": float(((pred - target) ** 2).mean()),
            "exact_count_vector_accuracy": float((pred == target).all(1).double().mean()),
            "total_count_accuracy": float((pred.sum(1) == target.sum(1)).double().mean()), "rows": len(x)}


def choose_threshold(model: Supervised, task: Task, grid: list[float]) -> float:
    """The grid threshold with the best micro F1 on the validation split."""
    x = standardized(task, task.valid)
    prob = model.label_probability(x).numpy()
    assert task.y_valid is not None
    scores = [f1_scores(task.y_valid, prob >= t)["micro_f1"] for t in grid]
    return grid[int(np.argmax(scores))]
