"""The deterministic code: exact mode against brute force, torch and numpy identical, and the binary
format round trip with its validation."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from bundle import codes
from model import codes as tcodes


def _multinomial_log_pmf(counts: tuple[int, ...], logp: np.ndarray) -> float:
    n = sum(counts)
    return math.lgamma(n + 1) + sum(c * lp - math.lgamma(c + 1) for c, lp in zip(counts, logp, strict=True))


@pytest.mark.parametrize("seed", range(20))
def test_multinomial_mode_is_exact_against_enumeration(seed: int) -> None:
    rng = np.random.default_rng(seed)
    K, n = 4, int(rng.integers(0, 7))
    logits = rng.normal(size=K) * 1.5
    logp = logits - np.log(np.exp(logits).sum())
    best = max((c for c in itertools.product(range(n + 1), repeat=K) if sum(c) == n),
               key=lambda c: _multinomial_log_pmf(c, logp))
    got = codes.multinomial_mode(logits[None], np.array([n]))[0]
    assert _multinomial_log_pmf(tuple(got), logp) == pytest.approx(_multinomial_log_pmf(best, logp), abs=1e-9)
    assert got.sum() == n


@pytest.mark.parametrize("L0", [1, 5, 40])
def test_binomial_mode_is_exact(L0: int) -> None:
    lam = np.linspace(0.001, 0.999, 97)
    got = codes.binomial_mode(lam, L0)
    k = np.arange(L0 + 1)
    for p, m in zip(lam, got, strict=True):
        logpmf = [math.lgamma(L0 + 1) - math.lgamma(i + 1) - math.lgamma(L0 - i + 1) + i * math.log(p)
                  + (L0 - i) * math.log(1 - p) for i in k]
        assert logpmf[m] == pytest.approx(max(logpmf), abs=1e-9)


@pytest.mark.parametrize("per_slot", [False, True])
def test_torch_and_numpy_codes_are_identical_and_sparse(per_slot: bool) -> None:
    torch.manual_seed(0)
    B, K, L0 = 300, 50, 12
    pi = torch.randn(B, L0, K) * 3 if per_slot else torch.randn(B, K) * 3
    lam = torch.randn(B, 2) * 2
    L_t, c_t = tcodes.deterministic_code(pi, lam, L0)
    L_n, c_n = codes.deterministic_code(pi.numpy(), lam.numpy(), L0)
    assert np.array_equal(L_t.numpy(), L_n) and np.array_equal(c_t.numpy(), c_n)
    assert np.all(c_n.sum(1) == L_n) and np.all((c_n > 0).sum(1) <= L0) and np.all(L_n <= L0)


def test_stochastic_code_frequencies_match_q() -> None:
    rng = np.random.default_rng(0)
    pi = np.log(np.array([[0.6, 0.3, 0.1]]))
    lam_logits = np.array([[0.0, math.log(0.25 / 0.75)]])  # lambda = 0.25
    B = 20_000
    L, counts = codes.stochastic_code(np.repeat(pi, B, 0), np.repeat(lam_logits, B, 0), 8, rng)
    assert np.all(counts.sum(1) == L)
    assert abs(L.mean() - 8 * 0.25) < 5 * math.sqrt(8 * 0.25 * 0.75 / B)
    freq = counts.sum(0) / counts.sum()
    assert np.allclose(freq, [0.6, 0.3, 0.1], atol=0.02)


def test_label_probability_matches_simulation() -> None:
    rng = np.random.default_rng(1)
    pi = np.array([[1.0, 0.0, -1.0, 2.0]])
    lam = np.array([[0.3, -0.2]])
    p = codes.label_probability(pi, lam, 5)[0]
    _, counts = codes.stochastic_code(np.repeat(pi, 50_000, 0), np.repeat(lam, 50_000, 0), 5, rng)
    assert np.allclose((counts > 0).mean(0), p, atol=0.01)


@pytest.mark.parametrize("K", [10, 256, 257, 5000])
def test_binary_format_round_trip_and_size(K: int) -> None:
    idx = np.array([0, 3, K - 1])
    cnt = np.array([2, 1, 4])
    blob = codes.pack(idx, cnt, K)
    assert len(blob) == codes.code_size(3, K) == 2 + 3 * (codes.index_width(K) + 1)
    i2, c2 = codes.unpack(blob, K, L0=8)
    assert np.array_equal(i2, idx) and np.array_equal(c2, cnt)
    assert codes.unpack(codes.pack(np.array([], int), np.array([], int), K), K, 8)[0].size == 0


@pytest.mark.parametrize("blob, message", [
    (b"", "at least 2"),
    (bytes([2, 0]), "version 2"),
    (bytes([1, 2, 3]), "declares 2 non-zeros"),
    (bytes([1, 1, 99, 1]), "indices must lie in"),
    (bytes([1, 2, 3, 3, 1, 1]), "must not repeat"),
    (bytes([1, 1, 3, 0]), "counts must be positive"),
    (bytes([1, 2, 3, 4, 5, 5]), "over L0"),
])
def test_unpack_rejects_invalid_codes(blob: bytes, message: str) -> None:
    with pytest.raises(codes.CodeFormatError, match=message):
        codes.unpack(blob, K=10, L0=8)


def test_rows_to_sparse_equals_to_sparse_per_row_including_empty_rows() -> None:
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 3, size=(7, 9)) * (rng.random((7, 9)) < 0.3)
    counts[2] = 0  # an empty code (L_hat = 0)
    counts[6] = 0  # an empty last row
    got = codes.rows_to_sparse(counts)
    assert len(got) == len(counts)
    for row, (idx, cnt) in zip(counts, got, strict=True):
        want_idx, want_cnt = codes.to_sparse(row)
        assert idx.dtype == cnt.dtype == np.int64
        assert idx.tolist() == want_idx.tolist() and cnt.tolist() == want_cnt.tolist()
    assert got[2][0].size == 0 and got[6][0].size == 0 and sum(c.size for _, c in got) == int((counts > 0).sum())
