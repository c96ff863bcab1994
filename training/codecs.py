"""Baseline codecs for measurement vectors: what an operator would use instead of a sparse code.

Every codec has the bundle's contract: raw vectors in (float32, original units), original units out.
Lossy codecs standardize with the mean and std of their training data first. A codec turns vectors into
integer symbols (``encode``), symbols back into vectors (``decode``), and one vector's symbols into the
message it would send (``pack``); the rate is the length of that message, so every byte is counted.
Each codec class names its family (the ``method`` of its result rows), its role in the study, the
message it sends, and the short label of one setting (``label(params)``): the one place these live.

    RawFloat32         the vector itself: the reference
    Float16            the standardized vector as float16 (raw float16 overflows above 65,504: bitrates)
    UniformScalar      b bits per value, per-feature uniform quantizer, bit-packed: ceil(D * b / 8) bytes
    Lossless           raw DEFLATE (zlib) or raw LZMA2 of the float32 vector, per vector or as one archive
    PCAQuant           m principal components, each quantized to b bits: ceil(m * b / 8) bytes
    OMPSparse          learned dictionary of K atoms, L0-sparse codes by orthogonal matching pursuit
    KSparseAE          k-sparse autoencoder (Makhzani & Frey, 2014): top-k activations of an MLP encoder
    KMeansVQ           one index into 2^b centroids: ceil(b / 8) bytes
    ProductQuantizer   M sub-vectors, one 8-bit index each: M bytes

More families live beside this module: ``codecs_faiss`` (optimized PQ, residual quantization),
``codecs_fsq`` (finite scalar quantization), ``codecs_sdlgm`` (the SDLGM itself, in torch and as a bundle).

The two sparse codecs use the service's binary format (``bundle.codes``) with the quantized value in
place of the count: a version byte, n, n indices, n one-byte values, so 2 + n * (index width + 1) bytes,
the same accounting as the SDLGM's codes.

Quantized values use ``Uniform``: per-column ranges from the training data, the clipping quantile chosen
per column to minimise the training error, reconstruction at bin centres.
"""

from __future__ import annotations

import lzma
import math
import warnings
import zlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from scipy import linalg
from sklearn.cluster import MiniBatchKMeans
from sklearn.linear_model import orthogonal_mp_gram
from torch import nn

from bundle import codes
from training.datasets import safe_std
from training.loop import Loop, LoopConfig, Schedule, run

TAILS = (0.0, 1e-3, 1e-2, 5e-2)  # clipping quantiles that Uniform chooses from, per column
Role = Literal["reference", "baseline", "sdlgm"]


def factorized_entropy_bits(symbols: np.ndarray) -> float:
    """Plug-in entropy of each symbol column (its empirical distribution over the rows), summed: bits per
    row that an arithmetic coder with one static model per column would approach. (N, S) -> float."""
    total = 0.0
    for col in np.asarray(symbols).T:
        p = np.unique(col, return_counts=True)[1] / len(col)
        total -= float((p * np.log2(p)).sum())
    return total


@dataclass(frozen=True)
class Uniform:
    """Per-column uniform quantizer with 2^bits levels over [lo, hi]; values outside are clipped."""

    lo: np.ndarray  # (C,)
    hi: np.ndarray  # (C,)
    bits: int

    @classmethod
    def fit(cls, values: np.ndarray, bits: int) -> Uniform:
        """Fit on (N, C) training values; NaN marks an absent value (ignored). For each column the range
        is [q, 1 - q] quantiles with q from TAILS, whichever gives the least squared error on the data."""
        v = np.asarray(values, dtype=np.float64)
        present = ~np.isnan(v)
        filled = np.where(present, v, 0.0)
        best_err = np.full(v.shape[1], np.inf)
        lo_best, hi_best = np.zeros(v.shape[1]), np.ones(v.shape[1])
        for q in TAILS:
            with warnings.catch_warnings():  # an atom no training code uses has no values: range [0, 1]
                warnings.simplefilter("ignore", RuntimeWarning)
                lo = np.nan_to_num(np.nanquantile(v, q, axis=0), nan=0.0)
                hi = np.nan_to_num(np.nanquantile(v, 1 - q, axis=0), nan=1.0)
            hi = np.maximum(hi, lo + 1e-6)
            quant = cls(lo, hi, bits)
            err = (np.where(present, quant.decode(quant.encode(filled)) - filled, 0.0) ** 2).sum(0)
            better = err < best_err
            best_err[better], lo_best[better], hi_best[better] = err[better], lo[better], hi[better]
        return cls(lo_best, hi_best, bits)

    @property
    def levels(self) -> int:
        return 1 << self.bits

    def encode(self, values: np.ndarray) -> np.ndarray:
        """(N, C) values -> (N, C) int64 level indices in [0, 2^bits)."""
        scaled = (np.asarray(values, dtype=np.float64) - self.lo) / (self.hi - self.lo) * self.levels
        return np.clip(np.floor(scaled), 0, self.levels - 1).astype(np.int64)

    def decode(self, idx: np.ndarray) -> np.ndarray:
        return self.lo + (np.asarray(idx, dtype=np.float64) + 0.5) * (self.hi - self.lo) / self.levels


def pack_bits(values: np.ndarray, bits: int) -> bytes:
    """Unsigned integers of `bits` bits each, concatenated most significant bit first, zero-padded to
    whole bytes: ceil(len * bits / 8) bytes."""
    v = np.asarray(values, dtype=np.uint64)
    shifts = np.arange(bits - 1, -1, -1, dtype=np.uint64)
    return np.packbits(((v[:, None] >> shifts) & np.uint64(1)).astype(np.uint8).ravel()).tobytes()


class Codec(ABC):
    """Raw vectors (N, D) -> integer symbols (N, S) -> raw reconstructions (N, D); ``pack`` gives the
    message of one vector, whose length is the rate."""

    family: ClassVar[str]  # the method's name in results and reports
    role: ClassVar[Role] = "baseline"
    message: ClassVar[str]  # what one vector's message holds, and its size in bytes
    params: dict[str, Any]

    @classmethod
    def label(cls, params: dict[str, Any]) -> str:
        """A short name of one setting, e.g. 'PCA m=16 b=4'."""
        return cls.family

    def fit(self, x_train: np.ndarray) -> Codec:
        """Learn from raw training vectors (N, D); returns self."""
        return self

    @abstractmethod
    def encode(self, x: np.ndarray) -> np.ndarray:
        """(N, D) raw vectors -> (N, S) int64 symbols: everything decode reads."""

    @abstractmethod
    def decode(self, symbols: np.ndarray) -> np.ndarray:
        """(N, S) symbols -> (N, D) float64 reconstructions in original units."""

    @abstractmethod
    def pack(self, row: np.ndarray) -> bytes:
        """One vector's symbols (S,) -> its message."""

    def sizes(self, symbols: np.ndarray) -> np.ndarray:
        """(N,) bytes of each vector's message."""
        return np.array([len(self.pack(row)) for row in symbols], dtype=np.float64)

    def code_features(self, symbols: np.ndarray) -> np.ndarray | None:
        """What a downstream model can read from the code itself, (N, F); None where only the
        reconstruction makes sense."""
        return None


class Standardized(Codec):
    """A lossy codec that works on vectors standardized with its training data's mean and std."""

    mean: np.ndarray
    std: np.ndarray

    def fit(self, x_train: np.ndarray) -> Codec:
        x = np.asarray(x_train, dtype=np.float64)
        std = x.std(0)
        self.mean, self.std = x.mean(0), safe_std(std)
        self._fit((x - self.mean) / self.std)
        return self

    def encode(self, x: np.ndarray) -> np.ndarray:
        return self._encode((np.asarray(x, dtype=np.float64) - self.mean) / self.std)

    def decode(self, symbols: np.ndarray) -> np.ndarray:
        return self._decode(symbols) * self.std + self.mean

    def _fit(self, x: np.ndarray) -> None:  # noqa: B027 (a codec without learned parts needs nothing)
        """Learn from standardized training vectors (N, D)."""

    @abstractmethod
    def _encode(self, x: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def _decode(self, symbols: np.ndarray) -> np.ndarray: ...


class RawFloat32(Codec):
    """The vector itself as float32: the reference, lossless by definition."""

    family = "raw float32"
    role: ClassVar[Role] = "reference"
    message = "the D float32 values: 4D bytes"

    def __init__(self) -> None:
        self.params = {}

    def encode(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.int64)

    def decode(self, symbols: np.ndarray) -> np.ndarray:
        return symbols.astype(np.uint32).view(np.float32).astype(np.float64)

    def pack(self, row: np.ndarray) -> bytes:
        return row.astype("<u4").tobytes()


class Float16(Standardized):
    family = "float16"
    message = ("the standardized vector as float16 (raw float16 overflows above 65,504, which bitrates "
               "exceed): 2D bytes")

    def __init__(self) -> None:
        self.params = {}

    def _encode(self, x: np.ndarray) -> np.ndarray:
        return x.astype(np.float16).view(np.uint16).astype(np.int64)

    def _decode(self, symbols: np.ndarray) -> np.ndarray:
        return symbols.astype(np.uint16).view(np.float16).astype(np.float64)

    def pack(self, row: np.ndarray) -> bytes:
        return row.astype("<u2").tobytes()


class UniformScalar(Standardized):
    family = "uniform scalar"
    message = "b bits per value, bit-packed; per-feature range from train: ceil(D b / 8) bytes"

    def __init__(self, bits: int) -> None:
        if not 1 <= bits <= 16:
            raise ValueError(f"bits must be in 1..16, got {bits}")
        self.bits, self.params = bits, {"bits": bits}

    @classmethod
    def label(cls, params: dict[str, Any]) -> str:
        return f"uniform {params['bits']}-bit"

    def _fit(self, x: np.ndarray) -> None:
        self.q = Uniform.fit(x, self.bits)

    def _encode(self, x: np.ndarray) -> np.ndarray:
        return self.q.encode(x)

    def _decode(self, symbols: np.ndarray) -> np.ndarray:
        return self.q.decode(symbols)

    def pack(self, row: np.ndarray) -> bytes:
        return pack_bits(row, self.bits)


class Lossless(RawFloat32):
    """The raw float32 vector through DEFLATE (zlib, level 9) or LZMA2 (preset 9), without container
    headers. ``archive``: all vectors compressed as one stream, the size shared equally (the ratio of a
    stored file, not of a message per vector)."""

    family = "lossless"
    role = "baseline"
    message = ("raw DEFLATE level 9 / raw LZMA2 preset 9 (no container) of the 4D float32 bytes, per vector, "
               "or of the whole test set as one archive (size shared equally): measured")

    def __init__(self, kind: Literal["deflate", "lzma"], archive: bool) -> None:
        self.kind, self.archive = kind, archive
        self.params = {"compressor": "zlib (raw DEFLATE, level 9)" if kind == "deflate" else "LZMA2 (raw, preset 9)",
                       "scope": "whole test set" if archive else "per vector"}

    @classmethod
    def label(cls, params: dict[str, Any]) -> str:
        return f"{params['compressor'].split(' ')[0]} {params['scope']}"

    def compress(self, data: bytes) -> bytes:
        if self.kind == "deflate":
            c = zlib.compressobj(9, zlib.DEFLATED, -15)
            return c.compress(data) + c.flush()
        return lzma.compress(data, format=lzma.FORMAT_RAW, filters=self._filters(len(data)))

    def decompress(self, blob: bytes) -> bytes:
        if self.kind == "deflate":
            return zlib.decompress(blob, -15)
        return lzma.decompress(blob, format=lzma.FORMAT_RAW, filters=self._filters(None))

    @staticmethod
    def _filters(size: int | None) -> list[dict[str, int]]:
        """Preset 9 with the dictionary cut to the input (at least 4 KiB): the same output, without
        allocating preset 9's 64 MiB for every 320-byte vector."""
        dict_size = 1 << 26 if size is None else min(1 << 26, max(1 << 12, size))
        return [{"id": lzma.FILTER_LZMA2, "preset": 9, "dict_size": dict_size}]

    def pack(self, row: np.ndarray) -> bytes:
        return self.compress(row.astype("<u4").tobytes())

    def sizes(self, symbols: np.ndarray) -> np.ndarray:
        if not self.archive:
            return super().sizes(symbols)
        total = len(self.compress(symbols.astype("<u4").tobytes()))
        return np.full(len(symbols), total / len(symbols))


class PCAQuant(Standardized):
    family = "PCA + uniform"
    message = "m principal components of b bits, bit-packed; per-component range from train: ceil(m b / 8) bytes"

    def __init__(self, components: int, bits: int) -> None:
        self.m, self.bits, self.params = components, bits, {"components": components, "bits": bits}

    @classmethod
    def label(cls, params: dict[str, Any]) -> str:
        return f"PCA m={params['components']} b={params['bits']}"

    def _fit(self, x: np.ndarray) -> None:
        _, _, vt = linalg.svd(x, full_matrices=False)
        self.basis = vt[: self.m]  # (m, D), orthonormal rows
        self.q = Uniform.fit(x @ self.basis.T, self.bits)

    def _encode(self, x: np.ndarray) -> np.ndarray:
        return self.q.encode(x @ self.basis.T)

    def _decode(self, symbols: np.ndarray) -> np.ndarray:
        return self.q.decode(symbols) @ self.basis

    def pack(self, row: np.ndarray) -> bytes:
        return pack_bits(row, self.bits)


class _SparseValues(Standardized):
    """A code of at most L0 (index, 8-bit value) pairs out of K: symbols (N, K), 0 where absent and
    1 + the value's level where present; packed in the service's format with values for counts."""

    K: int
    bits = 8
    message = ("the service's format 1 with an 8-bit quantized value in place of each count: version, n, "
               "n indices (1 byte if K <= 256), n values: 2 + 2n bytes")

    def fit_values(self, coef: np.ndarray) -> None:
        """Quantizer per atom from training coefficients (N, K), zeros being absent."""
        self.q = Uniform.fit(np.where(coef != 0, coef, np.nan), self.bits)

    def quantize(self, coef: np.ndarray) -> np.ndarray:
        return np.where(coef != 0, self.q.encode(coef) + 1, 0)

    def dequantize(self, symbols: np.ndarray) -> np.ndarray:
        return np.where(symbols > 0, self.q.decode(np.maximum(symbols - 1, 0)), 0.0)

    def pack(self, row: np.ndarray) -> bytes:
        idx = np.flatnonzero(row)
        return codes.pack(idx, row[idx] - 1, self.K)

    def code_features(self, symbols: np.ndarray) -> np.ndarray:
        return self.dequantize(symbols)


class OMPSparse(_SparseValues):
    """Dictionary of K unit-norm atoms learned by the method of optimal directions (alternate OMP codes
    at L0 non-zeros and the least-squares dictionary), starting from K training vectors; codes by
    scikit-learn's orthogonal matching pursuit with at most L0 non-zeros."""

    family = "dictionary + OMP"

    def __init__(self, K: int, L0: int, iterations: int = 10, rows: int = 10_000, seed: int = 0) -> None:
        self.K, self.L0, self.iterations, self.rows, self.seed = K, L0, iterations, rows, seed
        self.params = {"K": K, "L0": L0, "value_bits": self.bits, "dictionary_iterations": iterations}

    @classmethod
    def label(cls, params: dict[str, Any]) -> str:
        return f"OMP K={params['K']} L0={params['L0']}"

    def coefficients(self, x: np.ndarray) -> np.ndarray:
        """(N, D) standardized -> (N, K) OMP coefficients with at most L0 non-zeros."""
        gram, xy = self.atoms @ self.atoms.T, self.atoms @ x.T  # (K, K), (K, N)
        coef = orthogonal_mp_gram(gram, xy, n_nonzero_coefs=self.L0, copy_Gram=False, copy_Xy=False)
        return np.asarray(coef).reshape(self.K, -1).T

    def _fit(self, x: np.ndarray) -> None:
        rng = np.random.default_rng(self.seed)
        sub = x[rng.permutation(len(x))[: self.rows]]
        atoms = sub[rng.permutation(len(sub))[: self.K]] + 1e-3 * rng.standard_normal((self.K, x.shape[1]))
        self.atoms = atoms / np.linalg.norm(atoms, axis=1, keepdims=True)  # (K, D)
        for _ in range(self.iterations):
            coef = self.coefficients(sub)  # (N, K)
            used = np.abs(coef).sum(0) > 0
            solved = linalg.lstsq(coef[:, used], sub)[0]  # (K_used, D)
            atoms = self.atoms.copy()
            atoms[used] = solved
            dead = ~used  # atoms no code uses restart at the worst-reconstructed vectors
            if dead.any():
                worst = np.argsort(((sub - coef @ self.atoms) ** 2).sum(1))[::-1][: int(dead.sum())]
                atoms[dead] = sub[worst]
            self.atoms = atoms / np.maximum(np.linalg.norm(atoms, axis=1, keepdims=True), 1e-12)
        self.fit_values(self.coefficients(sub))

    def _encode(self, x: np.ndarray) -> np.ndarray:
        return self.quantize(self.coefficients(x))

    def _decode(self, symbols: np.ndarray) -> np.ndarray:
        return self.dequantize(symbols) @ self.atoms


class _KSparseNet(nn.Module):
    def __init__(self, D: int, K: int, hidden: Sequence[int]) -> None:
        super().__init__()
        from model.sdlgm import mlp

        self.encoder = mlp([D, *hidden, K])
        self.decoder = mlp([K, *reversed(hidden), D])

    @staticmethod
    def top_k(h: torch.Tensor, k: int) -> torch.Tensor:
        """Keep the k largest activations of each row, zero the rest; (B, K)."""
        keep = torch.zeros_like(h).scatter_(1, h.topk(k, dim=1).indices, 1.0)
        return h * keep


class KSparseAE(_SparseValues):
    """k-sparse autoencoder (Makhzani & Frey, 2014) with the SDLGM's MLP sizes: the k largest of K
    encoder activations are kept (k annealed from K down to k over the first half of training, their
    remedy for dead units), an MLP decodes them; MSE on standardized data, Adam with cosine decay.
    The kept values are quantized to 8 bits per unit."""

    family = "k-sparse AE"

    def __init__(self, K: int, k: int, hidden: Sequence[int] = (256, 128), iterations: int = 4000,
                 batch_size: int = 100, lr: float = 1e-3, lr_final: float = 1e-4, seed: int = 0) -> None:
        self.K, self.k, self.hidden, self.iterations = K, k, tuple(hidden), iterations
        self.batch_size, self.lr, self.lr_final, self.seed = batch_size, lr, lr_final, seed
        self.params = {"K": K, "k": k, "value_bits": self.bits, "iterations": iterations}

    @classmethod
    def label(cls, params: dict[str, Any]) -> str:
        return f"k-sparse AE K={params['K']} k={params['k']}"

    def _fit(self, x: np.ndarray) -> None:
        torch.manual_seed(self.seed)
        self.net = net = _KSparseNet(x.shape[1], self.K, self.hidden)
        data = torch.from_numpy(x.astype(np.float32))
        T = self.iterations

        def step_loss(idx: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
            k = max(self.k, round(self.K - (self.K - self.k) * step / max(T // 2, 1)))
            xb = data[idx]
            return {"loss": ((net.decoder(net.top_k(net.encoder(xb), k)) - xb) ** 2).sum(1).mean()}

        cfg = LoopConfig(steps=T, batch_size=self.batch_size, lr=self.lr, order="replacement", seed=self.seed,
                         schedule=Schedule("cosine", lr_final=self.lr_final))
        run(Loop(cfg, net.parameters(), len(data), step_loss, [net]))
        net.eval()
        self.fit_values(self.activations(x))

    @torch.no_grad()
    def activations(self, x: np.ndarray) -> np.ndarray:
        """(N, D) standardized -> (N, K) kept activations (k non-zeros)."""
        h = self.net.encoder(torch.from_numpy(x.astype(np.float32)))
        return self.net.top_k(h, self.k).double().numpy()

    def _encode(self, x: np.ndarray) -> np.ndarray:
        return self.quantize(self.activations(x))

    @torch.no_grad()
    def _decode(self, symbols: np.ndarray) -> np.ndarray:
        z = torch.from_numpy(self.dequantize(symbols).astype(np.float32))
        return self.net.decoder(z).double().numpy()


class KMeansVQ(Standardized):
    """One index into 2^bits centroids of the standardized vectors (mini-batch k-means)."""

    family = "k-means VQ"
    message = "one index into 2^b centroids: ceil(b / 8) bytes"

    def __init__(self, bits: int, seed: int = 0) -> None:
        self.bits, self.seed, self.params = bits, seed, {"bits": bits, "centroids": 1 << bits}

    @classmethod
    def label(cls, params: dict[str, Any]) -> str:
        return f"k-means {params['centroids']}"

    def _fit(self, x: np.ndarray) -> None:
        self.km = _kmeans(x, 1 << self.bits, self.seed)

    def _encode(self, x: np.ndarray) -> np.ndarray:
        return self.km.predict(x)[:, None].astype(np.int64)

    def _decode(self, symbols: np.ndarray) -> np.ndarray:
        return np.asarray(self.km.cluster_centers_[symbols[:, 0]], dtype=np.float64)

    def pack(self, row: np.ndarray) -> bytes:
        return int(row[0]).to_bytes(math.ceil(self.bits / 8), "little")


class ProductQuantizer(Standardized):
    """M sub-vectors, each replaced by one of 2^bits centroids. ``order`` permutes the features before
    the split (the benchmark groups each KPI's seconds together, which correlate most)."""

    family = "product quantization"
    message = "M sub-vectors (each KPI's seconds grouped), one b-bit index each, bit-packed: ceil(M b / 8) bytes"

    def __init__(self, M: int, bits: int = 8, order: np.ndarray | None = None, seed: int = 0) -> None:
        self.M, self.bits, self.order, self.seed = M, bits, order, seed
        self.params = {"M": M, "bits": bits}

    @classmethod
    def label(cls, params: dict[str, Any]) -> str:
        return f"PQ M={params['M']} b={params['bits']}"

    def _fit(self, x: np.ndarray) -> None:
        order = np.arange(x.shape[1]) if self.order is None else np.asarray(self.order)
        self.groups = np.array_split(order, self.M)
        self.kms = [_kmeans(x[:, g], 1 << self.bits, self.seed + i) for i, g in enumerate(self.groups)]

    def _encode(self, x: np.ndarray) -> np.ndarray:
        return np.stack([km.predict(x[:, g]) for km, g in zip(self.kms, self.groups, strict=True)], 1).astype(np.int64)

    def _decode(self, symbols: np.ndarray) -> np.ndarray:
        out = np.zeros((len(symbols), sum(len(g) for g in self.groups)))
        for j, (km, g) in enumerate(zip(self.kms, self.groups, strict=True)):
            out[:, g] = km.cluster_centers_[symbols[:, j]]
        return out

    def pack(self, row: np.ndarray) -> bytes:
        return pack_bits(row, self.bits)


def _kmeans(x: np.ndarray, k: int, seed: int) -> MiniBatchKMeans:
    km = MiniBatchKMeans(n_clusters=min(k, len(x)), batch_size=4096, n_init=1, max_iter=50, random_state=seed)
    return km.fit(np.ascontiguousarray(x, dtype=np.float64))
