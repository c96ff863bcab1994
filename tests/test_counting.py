"""Table III's parts: the composite generator, the exact count likelihood against brute-force enumeration,
and a tiny end-to-end run of benchmarks/table3.py."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from model.dis import count_log_likelihood
from training.counting import BLANK, SIDE, make_composites, split_composites


def _digits(n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic source digits: image i is filled with the value i % 251 + 1, so a column is identifiable."""
    labels = np.arange(n) % 10
    images = np.stack([np.full((SIDE, SIDE), i % 251 + 1, np.uint8) for i in range(n)])
    return images, labels


def test_composite_counts_match_the_columns() -> None:
    images, labels = _digits()
    comp = make_composites(images, labels, 300, np.random.default_rng(0))
    assert comp.images.shape == (300, SIDE, 5 * SIDE)
    value_to_label = {i % 251 + 1: labels[i] for i in range(len(labels))}
    for img, digits, counts in zip(comp.images, comp.digits, comp.counts, strict=True):
        seen = []
        for c in range(5):
            col = img[:, SIDE * c: SIDE * (c + 1)]
            if digits[c] == BLANK:
                assert not col.any()
            else:
                assert len(np.unique(col)) == 1 and value_to_label[int(col[0, 0])] == digits[c]
                seen.append(int(digits[c]))
        assert counts.tolist() == np.bincount(np.array(seen, int), minlength=10).tolist()
    blank_share = (comp.digits == BLANK).mean()
    assert abs(blank_share - 0.5) < 4 * math.sqrt(0.25 / comp.digits.size)  # 4 standard errors


def test_split_uses_disjoint_source_digits_and_is_seeded() -> None:
    images, labels = _digits(250)  # values 1..250: each source image is identifiable
    tr, te = split_composites(images, labels, n_train=100, n_test=50, seed=1)
    tr_vals = set(np.unique(tr.images)) - {0}
    te_vals = set(np.unique(te.images)) - {0}
    assert tr_vals and te_vals and not tr_vals & te_vals
    again, _ = split_composites(images, labels, n_train=100, n_test=50, seed=1)
    assert np.array_equal(again.images, tr.images) and np.array_equal(again.counts, tr.counts)


@pytest.mark.parametrize(("K", "L0"), [(3, 3), (2, 4), (4, 2)])
def test_count_likelihood_matches_brute_force(K: int, L0: int) -> None:
    """Enumerate every gate vector w and slot assignment: P(c) = sum over (w, s) with sum_l w_l e_{s_l} = c."""
    torch.manual_seed(K + L0)
    pi_logits, lam_logits = torch.randn(1, K, dtype=torch.float64), torch.randn(1, 2, dtype=torch.float64)
    pi = torch.softmax(pi_logits, -1)[0].tolist()
    lam = float(torch.softmax(lam_logits, -1)[0, 1])
    probs: dict[tuple[int, ...], float] = {}
    for w in itertools.product((0, 1), repeat=L0):
        for s in itertools.product(range(K), repeat=L0):
            c = [0] * K
            p = 1.0
            for wl, sl in zip(w, s, strict=True):
                p *= (lam if wl else 1 - lam) * pi[sl]
                c[sl] += wl
            probs[tuple(c)] = probs.get(tuple(c), 0.0) + p
    assert sum(probs.values()) == pytest.approx(1.0)
    counts = torch.tensor(list(probs), dtype=torch.float64)
    ll = count_log_likelihood(pi_logits.expand(len(counts), K), lam_logits.expand(len(counts), 2), counts, L0)
    assert torch.allclose(ll.exp(), torch.tensor(list(probs.values()), dtype=torch.float64), atol=1e-12)


def test_count_likelihood_refuses_totals_above_L0() -> None:
    with pytest.raises(ValueError, match="L0 = 2"):
        count_log_likelihood(torch.zeros(1, 3), torch.zeros(1, 2), torch.tensor([[2, 1, 0]]), 2)


def test_table3_quick_run(tmp_path: Path) -> None:
    import table3

    assert table3.main(["--quick", "--out", str(tmp_path)]) == 0
    rows = {r["method"]: r for r in json.loads((tmp_path / "table3.json").read_text())}
    assert len(rows) == 2 and all(0 <= r["mse"] < 5 for r in rows.values())
