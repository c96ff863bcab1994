"""Tests for training/codecs*.py: the byte accounting of every codec (the length of the real message
against its formula), exact lossless round trips, the quantizers, the entropy estimate against brute
force, and for the learned and faiss quantizers a quality check that a broken codec fails. Synthetic data,
seeded: each test runs in about a second at most."""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from bundle import codes, formats
from bundle.formats import CodeSpace
from model.sdlgm import SDLGM, SDLGMConfig
from training import codecs, codecs_faiss, codecs_fsq
from training.codecs_sdlgm import BundleCodec, Log1pBitrates, SDLGMCodec, SDLGMLog1pCodec

REPO = Path(__file__).resolve().parents[1]


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
    ("raw float32 = 4 D", codecs.RawFloat32, 80),
    ("OPQ M=4: one byte each", lambda: codecs_faiss.OptimizedPQ(4, iterations=2, rows=400), 4),
    ("OPQ M=3, D padded to 21", lambda: codecs_faiss.OptimizedPQ(3, iterations=2, rows=400), 3),
    ("RQ M=3: one byte each", lambda: codecs_faiss.ResidualQuantizer(3, beam=2, rows=400), 3),
    ("FSQ levels for 2 bytes", lambda: codecs_fsq.FSQ(codecs_fsq.levels_for(2), (16,), (16,), iterations=5), 2),
    ("FSQ 5^3 levels: 7 bits", lambda: codecs_fsq.FSQ((5, 5, 5), (16,), (16,), iterations=5), 1),
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


@pytest.fixture(scope="module")
def low_rank() -> tuple[np.ndarray, np.ndarray]:
    """(3000, 16) train and (500, 16) held-out rows: 3 latent factors, a nonlinearity, a little noise."""
    rng = np.random.default_rng(4)
    z = rng.standard_normal((3500, 3))
    x = np.tanh(z @ rng.standard_normal((3, 16))) * np.linspace(1, 10, 16) + 0.05 * rng.standard_normal((3500, 16))
    return x[:3000].astype(np.float32), x[3000:].astype(np.float32)


def held_out_mse(codec: codecs.Codec, train: np.ndarray, test: np.ndarray) -> float:
    """MSE in units of the train variance of each feature (NRMSE squared) on the held-out rows."""
    x_hat = codec.fit(train).decode(codec.encode(test))
    return float((((x_hat - test) / train.std(0)) ** 2).mean())


@pytest.mark.parametrize("make", [lambda: codecs_faiss.OptimizedPQ(4, iterations=3, rows=3000),
                                  lambda: codecs_faiss.ResidualQuantizer(4, beam=4, rows=3000)],
                         ids=["OPQ", "RQ"])
def test_faiss_quantizers_beat_one_byte_k_means(make: Callable[[], codecs.Codec],
                                                 low_rank: tuple[np.ndarray, np.ndarray]) -> None:
    train, test = low_rank
    codec = make()
    mse = held_out_mse(codec, train, test)
    one_byte = held_out_mse(codecs.KMeansVQ(8), train, test)
    assert mse < 0.7 * one_byte, (mse, one_byte)
    sym = codec.encode(test)
    assert sym.shape == (500, 4) and sym.min() >= 0 and sym.max() <= 255
    assert codec.pack(sym[0]) == bytes(sym[0].tolist())  # the message is the M indices, a byte each


def test_rq_uses_every_codebook(low_rank: tuple[np.ndarray, np.ndarray]) -> None:
    """Later codebooks refine: RQ with 4 codebooks beats its own first 2 (decoded with the rest at a
    residual of zero is not possible, so compare the fitted M = 2)."""
    train, test = low_rank
    two = held_out_mse(codecs_faiss.ResidualQuantizer(2, beam=1, rows=3000), train, test)
    four = held_out_mse(codecs_faiss.ResidualQuantizer(4, beam=1, rows=3000), train, test)
    assert four < 0.8 * two


def test_fsq_beats_the_training_mean(low_rank: tuple[np.ndarray, np.ndarray]) -> None:
    train, test = low_rank
    codec = codecs_fsq.FSQ(codecs_fsq.levels_for(2), (64,), (64,), iterations=800)
    mse = held_out_mse(codec, train, test)
    mean = float((((train.mean(0) - test) / train.std(0)) ** 2).mean())  # about 1: what no code gives
    assert mse < 0.5 * mean, (mse, mean)
    sym = codec.encode(test)
    levels = np.array(codec.levels)
    assert sym.shape == (500, len(levels)) and (sym >= 0).all() and (sym < levels).all()


def test_fsq_message_is_the_mixed_radix_index() -> None:
    codec = codecs_fsq.FSQ((5, 3, 8), (4,), (4,), iterations=1)
    assert codec.nbytes == 1  # 120 codes
    for row in ([0, 0, 0], [4, 2, 7], [1, 2, 3]):
        blob = codec.pack(np.array(row))
        assert len(blob) == 1 and blob[0] == row[0] + 5 * (row[1] + 3 * row[2])
    big = codecs_fsq.FSQ((8,) * 21 + (2,), (4,), (4,), iterations=1)  # 64 bits: 8 bytes
    row = np.array([7] * 21 + [1])
    assert big.pack(row) == b"\xff" * 8


@pytest.mark.parametrize("nbytes", [1, 2, 3, 4, 6, 16])
def test_fsq_levels_fill_their_bytes(nbytes: int) -> None:
    levels = codecs_fsq.levels_for(nbytes)
    assert math.prod(levels) == 2 ** (8 * nbytes)
    assert codecs_fsq.FSQ(levels, iterations=1).nbytes == nbytes


@pytest.mark.parametrize("L", [2, 3, 4, 5, 8])
def test_fsq_bound_reaches_exactly_L_levels(L: int) -> None:
    net = codecs_fsq._FSQNet(4, [L], (4,), (4,))
    h = torch.linspace(-30, 30, 20001)[:, None]  # (N, 1)
    rounded = torch.round(net.bound(h))
    assert sorted(set(rounded.flatten().tolist())) == [float(v) for v in range(-(L // 2), L - L // 2)]
    assert torch.round(net.bound(torch.zeros(1, 1))).item() == 0.0
    q = net.quantize(h.requires_grad_())
    q.sum().backward()
    assert h.grad is not None and (h.grad > 0).any()  # straight through: the rounding passes gradients


def test_sdlgm_codec_sends_the_enum_format(x: np.ndarray) -> None:
    torch.manual_seed(0)
    model = SDLGM(SDLGMConfig(D=20, K=16, L0=3, encoder=[8], sparsity=[8], decoder=[8]))
    codec = SDLGMCodec(model, iterations=0)
    sym = codec.encode(x[:50])
    space = CodeSpace(16, 3)
    assert (codec.sizes(sym) == 2).all()  # C(19, 3) = 969 codes: 10 bits, 2 bytes whatever the code
    for row in sym[:10]:
        assert np.array_equal(formats.unpack("enum", codec.pack(row), space, None), row)
    assert codec.decode(sym).shape == (50, 20)
    assert codec.label(codec.params) == "SDLGM K=16 L0=3"
    log1p = SDLGMLog1pCodec(model, 0, Log1pBitrates([f"f{i}@0" for i in range(20)], ["f0"]))
    assert log1p.label(log1p.params) == "SDLGM K=16 L0=3 log1p bitrates" and log1p.family != codec.family


def test_log1p_bitrates_round_trip_on_their_columns_only() -> None:
    t = Log1pBitrates(["DL@0", "RSRP@0", "DL@1"], ["DL"])
    x = np.array([[0.0, -90.0, 1e5], [3.0, -100.0, 0.5]])
    y = t.forward(x)
    assert np.allclose(y[:, 1], x[:, 1]) and np.allclose(y[:, [0, 2]], np.log1p(x[:, [0, 2]]))
    assert np.allclose(t.inverse(y), x)


def test_bundle_codec_runs_the_committed_bundle() -> None:
    bundle = BundleCodec(REPO / "models" / "kpi5g", REPO)
    m = bundle.manifest
    assert m.standardization is not None
    rng = np.random.default_rng(5)
    x = np.asarray(m.standardization.mean) + rng.standard_normal((20, m.D)) * np.asarray(m.standardization.std)
    sym = bundle.encode(x)
    assert sym.shape == (20, m.K) and (sym.sum(1) <= m.L0).all()
    assert (bundle.sizes(sym) == m.code_space.enum_bytes).all()  # the enum format: fixed length
    assert all(np.array_equal(formats.unpack("enum", bundle.pack(r), m.code_space, None), r) for r in sym)
    assert bundle.decode(sym).shape == (20, m.D)
    assert bundle.params["bundle"] == "models/kpi5g"


def all_codec_classes() -> list[type[codecs.Codec]]:
    out, todo = [], [codecs.Codec]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if "family" in vars(cls):
            out.append(cls)
    return out


def test_every_family_is_named_once_in_the_code() -> None:
    """A family's name is written in its class and nowhere else in the KPI study's code: the study, the
    report and the tests read it from the class (or the result rows)."""
    files = [*sorted((REPO / "training").glob("codecs*.py")), REPO / "benchmarks" / "kpi_rd.py",
             REPO / "benchmarks" / "kpi_report.py", REPO / "tests" / "test_kpi_rd.py", Path(__file__)]
    sources = [p.read_text() for p in files]
    classes = all_codec_classes()
    assert len(classes) >= 15  # every codec the study runs, the three SDLGM ones included
    families = [c.family for c in classes]
    assert len(set(families)) == len(families)
    for family in families:
        written = sum(src.count(f'"{family}"') + src.count(f"'{family}'") for src in sources)
        assert written == 1, (family, written)
