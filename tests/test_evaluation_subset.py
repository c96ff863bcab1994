"""An expensive estimate (the importance-sampled -log p(x)) runs on a seeded uniform sample of the split,
never on its head: the binarized MNIST test file is grouped by digit, and its first rows are mostly easy
digits (see ../shared/REFERENCES.md, Table I, CORRECTION)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from model.sdlgm import SDLGM, SDLGMConfig
from training import evaluate
from training.config import Temperature
from training.evaluate import evaluate_generative, evaluation_rows
from training.tasks import Task
from training.temperatures import Temperatures


def test_the_rows_are_a_seeded_uniform_sample_spread_over_the_whole_split() -> None:
    rows = evaluation_rows(10_000, 2000, seed=0)
    assert len(rows) == len(set(rows.tolist())) == 2000
    assert np.array_equal(rows, np.sort(rows))
    assert np.array_equal(rows, evaluation_rows(10_000, 2000, seed=0))
    assert not np.array_equal(rows, evaluation_rows(10_000, 2000, seed=1))
    per_tenth = np.bincount(rows // 1000, minlength=10)  # 200 expected per tenth of the file; sd about 13
    assert per_tenth.min() > 140 and per_tenth.max() < 260
    assert np.array_equal(evaluation_rows(500, None, 0), np.arange(500))
    assert np.array_equal(evaluation_rows(500, 800, 0), np.arange(500))


def grouped_task(n: int = 1000, D: int = 6) -> Task:
    """Binary rows grouped like the MNIST test file: the first half all zeros, the second half all ones."""
    test = np.zeros((n, D), np.float32)
    test[n // 2:] = 1.0
    zeros, ones = np.zeros(D, np.float32), np.ones(D, np.float32)
    return Task(test, test[:10], test, [f"p{i}" for i in range(D)], "bernoulli", zeros, ones)


def test_the_is_estimate_of_a_grouped_file_is_the_whole_files_not_its_heads(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # -log p(x) of each row replaced by its group (0 for the head's half, 1 for the rest): the estimate must
    # be the whole file's mean 0.5 within a few standard errors, where the head of the file would give 0.
    monkeypatch.setattr(evaluate, "importance_nll", lambda model, x, samples: x[:, 0].double())
    task = grouped_task()
    torch.manual_seed(0)
    model = SDLGM(SDLGMConfig(D=task.D, K=5, L0=2, encoder=(8,), sparsity=(8,), decoder=(8,)))
    temps = Temperatures(Temperature(), Temperature())
    out = evaluate_generative(model, task, "test", temps, 0, is_samples=3, is_rows=200, is_seed=0)
    assert out["is_rows"] == 200 and out["rows"] == 1000
    assert out["is_subset"] == "uniform random, seed 0"
    se = math.sqrt(0.25 / 200)
    assert abs(out["is_nll"] - 0.5) < 4 * se
    assert out["is_nll_se"] == pytest.approx(se, rel=0.1)
    whole = evaluate_generative(model, task, "test", temps, 0, is_samples=3, is_rows=None)
    assert whole["is_subset"] == "all" and whole["is_nll"] == pytest.approx(0.5)
