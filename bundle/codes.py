"""Sparse codes in numpy: the deterministic code from the graphs' outputs, and the binary code format.

The deterministic code (what /encode sends) is the mode of the amortized posterior:
  L_hat  = mode of Binomial(L0, lambda)              = min(floor((L0 + 1) * lambda), L0)
  counts = mode of Multinomial(L_hat, softmax(pi))   (exact, by greedy increments, see below)
`model.codes` computes the same in torch; the parity tests hold the two to identical codes.

The multinomial log-pmf is, up to a constant, sum_k [n_k log p_k - log n_k!]: separable and concave in
each n_k, so adding one count at a time to argmax_k (log p_k - log(n_k + 1)) reaches the exact mode.
log p_k differs from the logit by a constant, so raw logits serve. Ties go to the lowest index.

Binary format, version 1 (one code; all integers little-endian):
  byte 0        format version (1)
  byte 1        n, the number of non-zero entries (<= L0 <= 255)
  n * w bytes   the indices in increasing order, w = 1 if K <= 256 else 2
  n bytes       the counts (each 1..L0), in the same order
So a code costs 2 + n * (w + 1) bytes.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FORMAT_VERSION = 1

FloatArray = npt.NDArray[np.floating]
IntArray = npt.NDArray[np.int64]


class CodeFormatError(ValueError):
    """A code that is not a valid code of the model at hand."""


def sigmoid(x: FloatArray) -> FloatArray:
    return np.asarray(1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64))))


def gate_probability(lambda_logits: FloatArray) -> FloatArray:
    """lambda = P(w_l = 1) from the sparsity net's two logits (off, on); (B, 2) -> (B,)."""
    lg = np.asarray(lambda_logits, dtype=np.float64)
    return sigmoid(lg[:, 1] - lg[:, 0])


def binomial_mode(lam: FloatArray, L0: int) -> IntArray:
    """(B,) probabilities -> (B,) modes of Binomial(L0, lam)."""
    return np.minimum(np.floor((L0 + 1) * np.asarray(lam, dtype=np.float64)), L0).astype(np.int64)


def multinomial_mode(logits: FloatArray, n: IntArray) -> IntArray:
    """(B, K) logits, (B,) totals -> (B, K) counts, the exact mode of Multinomial(n, softmax(logits)).

    Per-slot logits (B, L0, K) give instead the sum over the first n slots of each slot's argmax."""
    lg = np.asarray(logits, dtype=np.float64)
    n = np.asarray(n, dtype=np.int64)
    B = lg.shape[0]
    rows = np.arange(B)
    if lg.ndim == 3:
        K = lg.shape[2]
        counts = np.zeros((B, K), dtype=np.int64)
        best = lg.argmax(axis=2)  # (B, L0)
        for slot in range(lg.shape[1]):
            active = slot < n
            np.add.at(counts, (rows[active], best[active, slot]), 1)
        return counts
    counts = np.zeros(lg.shape, dtype=np.int64)
    for step in range(int(n.max(initial=0))):
        gain = lg - np.log(counts + 1.0)
        k = gain.argmax(axis=1)
        active = step < n
        counts[rows[active], k[active]] += 1
    return counts


def deterministic_code(pi_logits: FloatArray, lambda_logits: FloatArray, L0: int) -> tuple[IntArray, IntArray]:
    """The code the service sends: (L_hat (B,), counts (B, K))."""
    L_hat = binomial_mode(gate_probability(lambda_logits), L0)
    return L_hat, multinomial_mode(pi_logits, L_hat)


def stochastic_code(
    pi_logits: FloatArray, lambda_logits: FloatArray, L0: int, rng: np.random.Generator
) -> tuple[IntArray, IntArray]:
    """A hard sample from q: gates w_l ~ Bern(lambda), slots z_l ~ Cat(pi); (L (B,), counts (B, K))."""
    lam = gate_probability(lambda_logits)
    lg = np.asarray(pi_logits, dtype=np.float64)
    B = lg.shape[0]
    K = lg.shape[-1]
    w = rng.random((B, L0)) < lam[:, None]  # (B, L0)
    p = np.exp(lg - lg.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    cdf = np.cumsum(p if p.ndim == 3 else np.broadcast_to(p[:, None, :], (B, L0, K)), axis=-1)
    u = rng.random((B, L0, 1))
    slots = np.minimum((u > cdf).sum(axis=-1), K - 1)  # (B, L0)
    counts = np.zeros((B, K), dtype=np.int64)
    rows = np.repeat(np.arange(B), L0).reshape(B, L0)
    np.add.at(counts, (rows[w], slots[w]), 1)
    return w.sum(axis=1).astype(np.int64), counts


def slot_mode(slot_logits: FloatArray) -> IntArray:
    """(B, L0, A) per-slot logits over a slot's symbols -> (B, L0) the most likely symbol of each slot
    (lowest on ties): the deterministic code of a model whose slots gate themselves ("slot" or "on")."""
    return np.asarray(np.asarray(slot_logits, dtype=np.float64).argmax(axis=2), dtype=np.int64)


def slot_sample(slot_logits: FloatArray, rng: np.random.Generator) -> IntArray:
    """(B, L0, A) per-slot logits -> (B, L0) one symbol drawn from each slot's categorical."""
    lg = np.asarray(slot_logits, dtype=np.float64)
    gumbel = -np.log(-np.log(rng.random(lg.shape).clip(1e-300, None)))
    return np.asarray((lg + gumbel).argmax(axis=2), dtype=np.int64)


def label_probability(pi_logits: FloatArray, lambda_logits: FloatArray, L0: int) -> FloatArray:
    """P(k in code) = 1 - (1 - lambda * pi_k)^L0 for a shared pi; (B, K)."""
    lg = np.asarray(pi_logits, dtype=np.float64)
    p = np.exp(lg - lg.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    lam = gate_probability(lambda_logits)[:, None]
    return np.asarray(1.0 - np.power(1.0 - lam * p, L0))


def index_width(K: int) -> int:
    return 1 if K <= 256 else 2


def code_size(nnz: int, K: int) -> int:
    return 2 + nnz * (index_width(K) + 1)


def pack(indices: IntArray, counts: IntArray, K: int) -> bytes:
    """One sparse code (sorted indices, their counts) -> bytes of format version 1."""
    w = index_width(K)
    n = len(indices)
    out = bytearray([FORMAT_VERSION, n])
    out += np.asarray(indices, dtype="<u1" if w == 1 else "<u2").tobytes()
    out += np.asarray(counts, dtype="<u1").tobytes()
    return bytes(out)


def unpack(blob: bytes, K: int, L0: int) -> tuple[IntArray, IntArray]:
    """bytes of format version 1 -> (indices, counts), validated against the model's K and L0."""
    if len(blob) < 2:
        raise CodeFormatError(f"code is {len(blob)} bytes; a code has at least 2")
    if blob[0] != FORMAT_VERSION:
        raise CodeFormatError(f"code format version {blob[0]} is not supported (expected {FORMAT_VERSION})")
    n = blob[1]
    w = index_width(K)
    if len(blob) != code_size(n, K):
        raise CodeFormatError(f"code declares {n} non-zeros, so {code_size(n, K)} bytes, but has {len(blob)}")
    idx = np.frombuffer(blob, dtype="<u1" if w == 1 else "<u2", count=n, offset=2).astype(np.int64)
    cnt = np.frombuffer(blob, dtype="<u1", count=n, offset=2 + n * w).astype(np.int64)
    validate_sparse(idx, cnt, K, L0)
    if np.any(np.diff(idx) < 0):  # one code, one byte string: pack writes them in order
        raise CodeFormatError("indices must increase")
    return idx, cnt


def validate_sparse(indices: IntArray, counts: IntArray, K: int, L0: int) -> None:
    """Raise CodeFormatError unless (indices, counts) is a code of a model with this K and L0."""
    if len(indices) != len(counts):
        raise CodeFormatError(f"{len(indices)} indices but {len(counts)} counts")
    if len(indices) and (indices.min() < 0 or indices.max() >= K):
        raise CodeFormatError(f"indices must lie in [0, {K - 1}]")
    if len(np.unique(indices)) != len(indices):
        raise CodeFormatError("indices must not repeat")
    if len(counts) and counts.min() < 1:
        raise CodeFormatError("counts must be positive")
    if int(counts.sum()) > L0:
        raise CodeFormatError(f"counts sum to {int(counts.sum())}, over L0 = {L0}")


def to_sparse(counts_row: IntArray) -> tuple[IntArray, IntArray]:
    idx = np.flatnonzero(counts_row).astype(np.int64, copy=False)
    return idx, counts_row[idx].astype(np.int64, copy=False)


def sparse_rows(counts: IntArray) -> tuple[IntArray, IntArray, IntArray]:
    """Every row of counts (B, K) as sparse codes from one pass: the indices and counts of all rows one after
    another (each row's increasing), and the (B + 1,) offsets of the rows in them."""
    c = np.asarray(counts)
    rows, idx = np.nonzero(c)  # row-major: each row's indices come out increasing
    offsets = np.zeros(len(c) + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=len(c)), out=offsets[1:])
    return idx.astype(np.int64, copy=False), c[rows, idx].astype(np.int64, copy=False), offsets


def pack_rows(counts: IntArray, K: int) -> tuple[bytes, IntArray]:
    """Every row of counts (B, K) in format 1, one code after another, without a loop over the rows: (the
    bytes, the (B + 1,) offsets of the codes in them). Code i is the bytes of pack(*to_sparse(counts[i]), K)."""
    idx, cnt, first = sparse_rows(counts)
    n = np.diff(first)  # (B,) non-zeros per code
    if len(n) and n.max() > 255:
        raise ValueError(f"a code of format {FORMAT_VERSION} has at most 255 non-zeros, not {int(n.max())}")
    w = index_width(K)
    offsets = np.zeros(len(n) + 1, dtype=np.int64)
    np.cumsum(2 + n * (w + 1), out=offsets[1:])
    buf = np.zeros(int(offsets[-1]), dtype=np.uint8)
    starts = offsets[:-1]
    buf[starts] = FORMAT_VERSION
    buf[starts + 1] = n
    row = np.repeat(np.arange(len(n)), n)  # the code of each non-zero
    pos = np.arange(len(idx)) - first[row]  # its place in its code
    at = starts[row] + 2 + w * pos  # where its index goes
    buf[at] = idx & 0xFF  # little-endian, as "<u1" / "<u2" store it
    if w == 2:
        buf[at + 1] = (idx >> 8) & 0xFF
    buf[starts[row] + 2 + n[row] * w + pos] = cnt  # the counts after the n indices, truncated to a byte as "<u1"
    return buf.tobytes(), offsets


def to_dense(indices: IntArray, counts: IntArray, K: int) -> FloatArray:
    z = np.zeros(K, dtype=np.float32)
    z[indices] = counts
    return z
