"""Vector quantizers from faiss, on standardized vectors like the baselines of ``training.codecs``:
M codebooks of 256 entries, one byte each, so M bytes per vector.

    OptimizedPQ        a learned rotation, then product quantization (Ge et al., 2013; faiss.OPQMatrix)
    ResidualQuantizer  M codebooks applied in turn to the remaining residual, codes by beam search
                       (faiss.ResidualQuantizer; the encoder's beam may be wider than training's)
    LocalSearch        additive quantization with M full-dimensional codebooks, codes by iterated local
                       search (LSQ++, Martinez et al., 2018; faiss.LocalSearchQuantizer)

Both train on a random subset of ``rows`` training vectors (faiss's k-means samples too; OPQ is slow).
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

from training.codecs import Standardized

BITS = 8  # per codebook index: one byte each


def _subset(x: np.ndarray, rows: int, seed: int) -> np.ndarray:
    keep = np.random.default_rng(seed).permutation(len(x))[:rows]
    return np.ascontiguousarray(x[keep], dtype=np.float32)


def _bytes_message(row: np.ndarray) -> bytes:
    return row.astype(np.uint8).tobytes()


class OptimizedPQ(Standardized):
    """An orthonormal rotation learned jointly with the sub-quantizers (faiss alternates PQ training
    and the Procrustes solution for ``iterations`` rounds), then M sub-vectors of one byte each. D is
    padded with zeros to a multiple of M. The rotation starts at the permutation ``order`` (the study
    gives PQ's grouping of each KPI's seconds), so OPQ starts where PQ stands."""

    family = "optimized PQ"
    message = "a learned rotation, then M sub-vectors of one 8-bit index each: M bytes"

    def __init__(self, M: int, order: np.ndarray | None = None, iterations: int = 10, rows: int = 20_000,
                 seed: int = 0) -> None:
        self.M, self.order, self.iterations, self.rows, self.seed = M, order, iterations, rows, seed
        self.params = {"M": M, "bits": BITS, "iterations": iterations, "train_rows": rows}

    @classmethod
    def label(cls, params: dict[str, Any]) -> str:
        return f"OPQ M={params['M']}"

    def _fit(self, x: np.ndarray) -> None:
        D = x.shape[1]
        d2 = -(-D // self.M) * self.M  # padded to a multiple of M
        order = np.arange(D) if self.order is None else np.asarray(self.order)
        start = np.zeros((d2, d2), dtype=np.float32)  # (d_out, d_in padded): y = A x
        start[np.arange(d2), np.concatenate([order, np.arange(D, d2)])] = 1.0
        opq = faiss.OPQMatrix(D, self.M, d2)
        opq.niter = self.iterations
        faiss.copy_array_to_vector(start.ravel(), opq.A)
        self.index = faiss.IndexPreTransform(opq, faiss.IndexPQ(d2, self.M, BITS))
        self.index.train(_subset(x, self.rows, self.seed))

    def _encode(self, x: np.ndarray) -> np.ndarray:
        return self.index.sa_encode(np.ascontiguousarray(x, dtype=np.float32)).astype(np.int64)

    def _decode(self, symbols: np.ndarray) -> np.ndarray:
        return self.index.sa_decode(symbols.astype(np.uint8)).astype(np.float64)

    def pack(self, row: np.ndarray) -> bytes:
        return _bytes_message(row)


class ResidualQuantizer(Standardized):
    """M codebooks of 256 entries, each quantizing what the previous ones left; encoding (in training
    too) keeps the ``beam`` best partial codes at each step (beam 1: greedy)."""

    family = "residual quantization"
    message = "M codebook indices of 8 bits, the i-th quantizing the residual of the first i - 1: M bytes"

    def __init__(self, M: int, beam: int = 1, rows: int = 20_000, seed: int = 0, encode_beam: int | None = None) -> None:
        self.M, self.beam, self.rows, self.seed = M, beam, rows, seed
        self.encode_beam = beam if encode_beam is None else encode_beam
        self.params = {"M": M, "bits": BITS, "beam": beam, "encode_beam": self.encode_beam, "train_rows": rows}

    @classmethod
    def label(cls, params: dict[str, Any]) -> str:
        enc = params.get("encode_beam", params["beam"])
        return f"RQ M={params['M']} beam {params['beam']}" + (f", encode beam {enc}" if enc != params["beam"] else "")

    def _fit(self, x: np.ndarray) -> None:
        self.rq = faiss.ResidualQuantizer(x.shape[1], self.M, BITS)
        self.rq.max_beam_size = self.beam
        self.rq.train(_subset(x, self.rows, self.seed))
        self.rq.max_beam_size = self.encode_beam

    def _encode(self, x: np.ndarray) -> np.ndarray:
        return self.rq.compute_codes(np.ascontiguousarray(x, dtype=np.float32)).astype(np.int64)

    def _decode(self, symbols: np.ndarray) -> np.ndarray:
        return self.rq.decode(np.ascontiguousarray(symbols, dtype=np.uint8)).astype(np.float64)

    def pack(self, row: np.ndarray) -> bytes:
        return _bytes_message(row)


class LocalSearch(Standardized):
    """LSQ++: M additive codebooks of 256 full-D entries learned jointly, each code found by iterated
    local search with faiss's defaults (encode_ils_iters, and so on)."""

    family = "local search quantization"
    message = "M codebook indices of 8 bits, their entries summed: M bytes"

    def __init__(self, M: int, rows: int = 20_000, seed: int = 0) -> None:
        self.M, self.rows, self.seed = M, rows, seed
        self.params = {"M": M, "bits": BITS, "train_rows": rows}

    @classmethod
    def label(cls, params: dict[str, Any]) -> str:
        return f"LSQ M={params['M']}"

    def _fit(self, x: np.ndarray) -> None:
        self.lsq = faiss.LocalSearchQuantizer(x.shape[1], self.M, BITS)
        self.lsq.train(_subset(x, self.rows, self.seed))

    def _encode(self, x: np.ndarray) -> np.ndarray:
        return self.lsq.compute_codes(np.ascontiguousarray(x, dtype=np.float32)).astype(np.int64)

    def _decode(self, symbols: np.ndarray) -> np.ndarray:
        return self.lsq.decode(np.ascontiguousarray(symbols, dtype=np.uint8)).astype(np.float64)

    def pack(self, row: np.ndarray) -> bytes:
        return _bytes_message(row)
