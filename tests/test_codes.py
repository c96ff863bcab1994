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
    (bytes([1, 2, 4, 3, 1, 1]), "indices must increase"),
    (bytes([1, 1, 3, 0]), "counts must be positive"),
    (bytes([1, 2, 3, 4, 5, 5]), "over L0"),
])
def test_unpack_rejects_invalid_codes(blob: bytes, message: str) -> None:
    with pytest.raises(codes.CodeFormatError, match=message):
        codes.unpack(blob, K=10, L0=8)


def test_sparse_rows_equals_to_sparse_per_row_including_empty_rows() -> None:
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 3, size=(7, 9)) * (rng.random((7, 9)) < 0.3)
    counts[2] = 0  # an empty code (L_hat = 0)
    counts[6] = 0  # an empty last row
    idx, cnt, offsets = codes.sparse_rows(counts)
    assert idx.dtype == cnt.dtype == offsets.dtype == np.int64
    assert offsets[0] == 0 and offsets[-1] == len(idx) == len(cnt) == int((counts > 0).sum())
    for i, row in enumerate(counts):
        want_idx, want_cnt = codes.to_sparse(row)
        a, b = offsets[i], offsets[i + 1]
        assert idx[a:b].tolist() == want_idx.tolist() and cnt[a:b].tolist() == want_cnt.tolist()
    assert offsets[2] == offsets[3] and offsets[6] == offsets[7]


@pytest.mark.parametrize("K", [10, 256, 257, 70_000])
def test_pack_rows_gives_the_bytes_of_pack_per_row_even_for_counts_no_code_has(K: int) -> None:
    rng = np.random.default_rng(K)
    counts = rng.integers(0, 3, size=(9, K)) * (rng.random((9, K)) < 6 / K)
    counts[0] = 0  # an empty code first
    counts[4, [1, 5, K - 1]] = [300, -1, 7]  # counts that wrap in their byte, as pack's "<u1" wraps them
    data, offsets = codes.pack_rows(counts, K)
    blobs = [data[a:b] for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
    assert blobs == [codes.pack(*codes.to_sparse(row), K) for row in counts]
    assert offsets[0] == 0 and offsets[-1] == len(data)
    empty, none = codes.pack_rows(np.zeros((0, K), dtype=np.int64), K)
    assert (empty, none.tolist()) == (b"", [0])
    with pytest.raises(ValueError, match="at most 255 non-zeros"):
        codes.pack_rows(np.ones((1, 300), dtype=np.int64), 300)


def test_gates_are_computed_in_float64_from_float32_logits() -> None:
    lg = np.array([[np.float32(1e-8), 1.0], [0.0, 20.0], [3.5, -2.25]], dtype=np.float32)
    d = lg[:, 1].astype(np.float64) - lg[:, 0].astype(np.float64)
    want = np.array([1.0 / (1.0 + math.exp(-v)) for v in d])
    got = codes.gate_probability(lg)
    assert got.dtype == np.float64 and np.array_equal(got, want)
    s = codes.sigmoid(np.float32([20.0]))
    assert s.dtype == np.float64 and float(s[0]) == 1.0 / (1.0 + math.exp(-20.0)) < 1.0  # float32 rounds to 1


@pytest.mark.parametrize("L0", [5, 9, 10, 255])
def test_binomial_mode_is_exact_for_float32_probabilities_just_below_a_boundary(L0: int) -> None:
    # (L0 + 1) * lam is just under an integer: in float32 arithmetic it would round up to it
    lam = np.array([np.nextafter(np.float32(k / (L0 + 1)), np.float32(0)) for k in range(1, L0 + 1)])
    assert lam.dtype == np.float32
    got = codes.binomial_mode(lam, L0)
    for p, m in zip(lam.astype(np.float64), got, strict=True):
        logpmf = [math.lgamma(L0 + 1) - math.lgamma(i + 1) - math.lgamma(L0 - i + 1) + i * math.log(p)
                  + (L0 - i) * math.log1p(-p) for i in range(L0 + 1)]
        assert m == int(np.argmax(logpmf))


def test_multinomial_mode_of_float32_logits_is_the_exact_mode() -> None:
    # the second count: gain 1 - log 2 against the logit 1 - log 2 rounded in float32, 2e-9 below it
    logits = np.array([[np.float32(1.0) - np.float32(math.log(2.0)), 1.0]], dtype=np.float32)
    logp = logits[0].astype(np.float64)  # softmax's constant does not move the mode
    best = max([(0, 2), (1, 1), (2, 0)], key=lambda c: _multinomial_log_pmf(c, logp))
    assert best == (0, 2)
    assert codes.multinomial_mode(logits, np.array([2])).tolist() == [list(best)]


def test_codes_of_an_empty_batch_are_empty() -> None:
    L, counts = codes.deterministic_code(np.zeros((0, 5), np.float32), np.zeros((0, 2), np.float32), 3)
    assert L.shape == (0,) and counts.shape == (0, 5)


def test_code_arrays_are_int64_and_dense_codes_float32() -> None:
    rng = np.random.default_rng(0)
    pi, lam = rng.normal(size=(6, 5)).astype(np.float32), rng.normal(size=(6, 2)).astype(np.float32)
    per_slot = rng.normal(size=(6, 3, 5)).astype(np.float32)
    outputs = [*codes.deterministic_code(pi, lam, 3), *codes.deterministic_code(per_slot, lam, 3),
               *codes.stochastic_code(pi, lam, 3, rng), *codes.unpack(bytes([1, 2, 1, 4, 2, 1]), 5, 3),
               *codes.to_sparse(np.array([0, 2, 0, 1], dtype=np.uint8))]
    assert [a.dtype for a in outputs] == [np.dtype(np.int64)] * len(outputs)
    dense = codes.to_dense(np.array([1, 4]), np.array([2, 1]), 5)
    assert dense.dtype == np.float32 and dense.tolist() == [0, 2, 0, 0, 1]


def _softmax_rows(lg: np.ndarray) -> np.ndarray:
    out = np.empty_like(lg, dtype=np.float64)
    for idx in np.ndindex(*lg.shape[:-1]):
        row = [math.exp(float(v) - max(map(float, lg[idx]))) for v in lg[idx]]
        out[idx] = [v / sum(row) for v in row]
    return out


def test_label_probability_in_float64_per_row_at_any_logit_scale() -> None:
    pi = np.array([[1000.0, 999.0, 998.5, 990.0], [-1000.0, -1001.0, -1000.5, -1003.0], [0.1, 0.2, 0.3, 0.4]],
                  dtype=np.float32)
    lam = np.array([[0.0, 1.0], [2.0, -1.0], [0.25, 0.5]], dtype=np.float32)
    gate = codes.gate_probability(lam)[:, None]
    want = 1.0 - (1.0 - gate * _softmax_rows(pi)) ** 5
    got = codes.label_probability(pi, lam, 5)
    assert got.shape == (3, 4) and got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=0)


def test_stochastic_code_samples_each_slot_from_its_own_pi_at_any_logit_scale() -> None:
    rng = np.random.default_rng(2)
    B, L0 = 20_000, 3
    # per slot (B, L0, K): slot 0 prefers index 0, slot 1 index 2, slot 2 is uniform; logits around 1000
    slot_p = np.array([[0.7, 0.2, 0.1, 0.0], [0.1, 0.1, 0.8, 0.0], [0.25, 0.25, 0.25, 0.25]])
    logits = np.log(np.maximum(slot_p, 1e-300)) + 1000.0
    pi = np.repeat(logits[None], B, 0)
    lam = np.repeat(np.array([[-1000.0, 1000.0]]), B, 0)  # every gate on
    L, counts = codes.stochastic_code(pi, lam, L0, rng)
    assert np.all(L == L0) and np.all(counts.sum(1) == L0)
    freq = counts.sum(0) / counts.sum()
    se = np.sqrt(slot_p.mean(0) * (1 - slot_p.mean(0)) / (B * L0))
    assert np.all(np.abs(freq - slot_p.mean(0)) < 5 * se + 1e-12)
    # a shared pi with rows 1000 apart in scale: each row's own softmax
    shared = np.array([[1000.0, 1000.0 + math.log(3.0)], [-1000.0 + math.log(3.0), -1000.0]])
    _, c = codes.stochastic_code(np.tile(shared, (B, 1)), np.repeat(np.array([[0.0, 50.0]]), 2 * B, 0), 1, rng)
    first, second = c[0::2].sum(0) / B, c[1::2].sum(0) / B
    tolerance = 5 * math.sqrt(0.75 * 0.25 / B)
    assert abs(first[1] - 0.75) < tolerance and abs(second[0] - 0.75) < tolerance


@pytest.mark.parametrize(("K", "width", "size_of_three"), [(2, 1, 8), (256, 1, 8), (257, 2, 11), (65536, 2, 11)])
def test_index_width_and_code_size_by_hand(K: int, width: int, size_of_three: int) -> None:
    assert (codes.index_width(K), codes.code_size(3, K), codes.code_size(0, K)) == (width, size_of_three, 2)
    blob = codes.pack(np.array([0, 1, K - 1]), np.array([1, 2, 3]), K)
    assert blob == bytes([1, 3]) + b"".join(i.to_bytes(width, "little") for i in (0, 1, K - 1)) + bytes([1, 2, 3])
    assert len(blob) == size_of_three
