"""Tests for training/codecs.py: the byte accounting of every baseline (the length of the real message
against its formula), exact lossless round trips, the quantizer, and the entropy estimate against brute
force. Synthetic data, seeded: each test runs in well under a second."""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable

import numpy as np
import pytest

from bundle import codes
from training import codecs


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    """(600, 20) raw-looking vectors: correlated columns on different scales, a heavy-tailed one."""
    rng = np.random.default_rng(0)
    base = rng.standard_normal((600, 4)) @ rng.standard_normal((4, 20))
    out = base * np.linspace(1, 50, 20) + np.linspace(-100, 100, 20)
    out[:, 0] = rng.pareto(1.5, 600) * 1000  # a bitrate-like column
    return out.astype(np.float32)


# (codec factory, expected bytes per vector for D = 20, or None when the size varies per vector)
FIXED: list[tuple[str, Callable[[], codecs.Codec], int]] = [
    ("float16 = 2 D", codecs.Float16, 40),
    ("uniform 8-bit = D", lambda: codecs.UniformScalar(8), 20),
    ("uniform 3-bit = ceil(3 D / 8)", lambda: codecs.UniformScalar(3), 8),
    ("uniform 1-bit = ceil(D / 8)", lambda: codecs.UniformScalar(1), 3),
    ("PCA 5 x 8 bits", lambda: codecs.PCAQuant(5, 8), 5),
    ("PCA 5 x 4 bits = ceil(20 / 8)", lambda: codecs.PCAQuant(5, 4), 3),
    ("k-means 2^4: one byte", lambda: codecs.KMeansVQ(4), 1),
    ("k-means 2^9: two bytes", lambda: codecs.KMeansVQ(9), 2),
    ("PQ 4 x 8 bits", lambda: codecs.ProductQuantizer(4, 8), 4),
    ("PQ 3 x 4 bits = ceil(12 / 8)", lambda: codecs.ProductQuantizer(3, 4), 2),
]


@pytest.mark.parametrize(("name", "make", "size"), FIXED, ids=[f[0] for f in FIXED])
def test_fixed_size_codecs(name: str, make: Callable[[], codecs.Codec], size: int, x: np.ndarray) -> None:
    codec = make().fit(x[:400])
    sym = codec.encode(x[400:])
    assert sym.dtype == np.int64 and len(sym) == 200
    assert (codec.sizes(sym) == size).all(), name
    assert [len(codec.pack(r)) for r in sym[:3]] == [size] * 3
    x_hat = codec.decode(sym)
    assert x_hat.shape == (200, 20) and np.isfinite(x_hat).all()


def test_float16_overflow_is_avoided_by_standardizing(x: np.ndarray) -> None:
    big = x.copy()
    big[:, 0] = 5e5  # beyond float16's 65,504 in raw units
    codec = codecs.Float16().fit(np.concatenate([x, big]))
    x_hat = codec.decode(codec.encode(big))
    assert np.allclose(x_hat[:, 0], 5e5, rtol=1e-3)


def test_lossless_round_trip_and_sizes(x: np.ndarray) -> None:
    for kind in ("deflate", "lzma"):
        per_vector = codecs.Lossless(kind, archive=False)
        per_vector.fit(x)
        sym = per_vector.encode(x[:50])
        assert np.array_equal(per_vector.decode(sym), x[:50].astype(np.float64))
        blob = per_vector.pack(sym[0])
        assert per_vector.decompress(blob) == x[0].tobytes()
        assert per_vector.sizes(sym)[0] == len(blob)
        archive = codecs.Lossless(kind, archive=True)
        sizes = archive.sizes(sym)
        assert np.allclose(sizes, len(archive.compress(x[:50].tobytes())) / 50)
    raw_deflate = codecs.Lossless("deflate", archive=False).compress(b"abc" * 100)
    assert zlib.decompress(raw_deflate, -15) == b"abc" * 100  # no zlib header or checksum counted


@pytest.mark.parametrize("K", [16, 300])  # index width 1 byte up to K = 256, 2 above
def test_omp_sparse_code_bytes(K: int) -> None:
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((700, 6)) @ rng.standard_normal((6, 12))).astype(np.float32)
    codec = codecs.OMPSparse(K, L0=3, iterations=1, rows=700)
    codec.fit(x[:600])
    sym = codec.encode(x[600:])
    nnz = (sym > 0).sum(1)
    assert (nnz <= 3).all() and (nnz >= 1).all()
    width = 1 if K <= 256 else 2
    assert (codec.sizes(sym) == 2 + nnz * (width + 1)).all()
    blob = codec.pack(sym[0])
    assert blob[0] == codes.FORMAT_VERSION and blob[1] == nnz[0]
    assert codes.code_size(int(nnz[0]), K) == len(blob)
    idx = np.frombuffer(blob, dtype="<u1" if width == 1 else "<u2", count=int(nnz[0]), offset=2)
    assert np.array_equal(idx, np.flatnonzero(sym[0]))
    assert np.array_equal(np.frombuffer(blob[2 + width * nnz[0]:], dtype=np.uint8), sym[0][idx] - 1)
    features = codec.code_features(sym)
    assert features.shape == (100, K) and ((features != 0).sum(1) == nnz).all()


def test_k_sparse_autoencoder_keeps_k_values(x: np.ndarray) -> None:
    codec = codecs.KSparseAE(K=16, k=3, hidden=(8,), iterations=30)
    codec.fit(x[:400])
    sym = codec.encode(x[400:])
    assert ((sym > 0).sum(1) == 3).all()
    assert (codec.sizes(sym) == 2 + 3 * 2).all()
    assert codec.decode(sym).shape == (200, 20)


def test_uniform_quantizer_error_and_clipping() -> None:
    rng = np.random.default_rng(2)
    v = rng.uniform(-1, 1, (5000, 3))
    q = codecs.Uniform.fit(v, 6)
    inside = (v >= q.lo) & (v <= q.hi)
    step = (q.hi - q.lo) / 64
    err = np.abs(q.decode(q.encode(v)) - v)
    assert (err[inside] <= np.broadcast_to(step / 2, v.shape)[inside] + 1e-12).all()
    assert q.encode(np.array([[-5.0, 0.0, 5.0]]))[0, [0, 2]].tolist() == [0, 63]  # clipped to the ends
    tail = np.concatenate([rng.standard_normal(5000), [1e4]])[:, None]  # one outlier: clipping pays off
    assert codecs.Uniform.fit(tail, 3).hi[0] < 1e4


def test_uniform_quantizer_ignores_absent_values() -> None:
    v = np.array([[1.0, np.nan], [3.0, np.nan], [2.0, np.nan]])
    q = codecs.Uniform.fit(v, 8)
    assert q.lo[0] == pytest.approx(1.0) and q.hi[0] == pytest.approx(3.0)
    assert np.isfinite(q.lo[1]) and q.hi[1] > q.lo[1]  # an unused column still gets a valid range


def test_pack_bits_layout() -> None:
    assert codecs.pack_bits(np.array([1, 0, 3]), 2) == bytes([0b01001100])
    assert len(codecs.pack_bits(np.arange(10) % 8, 3)) == math.ceil(30 / 8)


def test_factorized_entropy_against_brute_force() -> None:
    rng = np.random.default_rng(3)
    cols = np.stack([rng.integers(0, 4, 1000), np.zeros(1000, dtype=int), rng.integers(0, 2, 1000)], 1)
    expected = 0.0
    for c in cols.T:
        p = np.bincount(c) / len(c)
        p = p[p > 0]
        expected -= float((p * np.log2(p)).sum())
    assert codecs.factorized_entropy_bits(cols) == pytest.approx(expected)
    assert expected == pytest.approx(3.0, abs=0.02)  # 2 bits + 0 + 1 bit
