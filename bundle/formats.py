"""Code formats: how a code of a bundle travels as bytes, and how many bytes that really is.

A code is a count vector over the model's K categories (B, K); its code space is what the model can emit:
  shared       the paper's SDLGM: L0 slots, each drawing one of the K categories (or off), so a code is a
               multiset of at most L0 categories: N = C(K + L0, L0) codes;
  partitioned  the K categories are M = L0 blocks of K / M; slot m draws from block m only (or is off), so
               a block holds at most one count of 1: N = (K / M + 1)^M codes;
  always on    partitioned, and no slot is ever off (a product code: one category per block, exactly):
               N = (K / M)^M codes, so 256 categories per block cost exactly one byte per slot.
Either way a code is also a sequence of L0 symbols over an alphabet with one "off" symbol (`symbols`):
the sorted categories padded with "off" (shared), or each block's category or "off" (partitioned); an
always-on space has no "off" symbol.

Formats (the `format` of /encode and /decode; the manifest lists those a bundle offers):
  v1     bundle.codes's format 1: a version byte, n, the n indices, the n counts (2 + n (w + 1) bytes).
  enum   the code's rank among all N codes of its space as a fixed-length little-endian integer of
         ceil(ceil(log2 N) / 8) bytes and nothing else: the model (fingerprint) says how to read it.
  range  the L0 symbols range-coded (constriction's ANS coder, 32-bit words) under the static
         per-slot model of the manifest (`entropy_model`, fitted on the training codes and covered by the
         fingerprint): about the code's information content, in whole 32-bit words per message; a
         stream of codes coded as one message amortizes the word.
Every unpack validates: a message of the wrong length, a rank outside the space, a range message that is
not whole words, does not decode to a valid code, or leaves data over, is a CodeFormatError (the
service's 400). (As with any entropy coder, some corrupted range messages decode to another valid code.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import numpy as np
import numpy.typing as npt

from bundle import codes
from bundle.codes import CodeFormatError, IntArray

Format = Literal["v1", "enum", "range"]
FORMATS: tuple[Format, ...] = ("v1", "enum", "range")
RANGE_WORD_BYTES = 4


@dataclass(frozen=True)
class CodeSpace:
    """The codes a model can emit: K categories, L0 slots, `partitions` = 1 (shared) or L0 (partitioned);
    `always_on`: a partitioned code whose every slot holds one category (no "off")."""

    K: int
    L0: int
    partitions: int = 1
    always_on: bool = False

    def __post_init__(self) -> None:
        if self.partitions not in (1, self.L0) or self.K % self.partitions:
            raise ValueError(f"partitions must be 1 or L0 = {self.L0} and divide K = {self.K}")
        if self.always_on and self.partitions != self.L0:
            raise ValueError("only a partitioned code space (partitions = L0) can have every slot always on")

    @property
    def partitioned(self) -> bool:
        """Slot m draws from block m only; an always-on code of one slot is a partitioned code of one block."""
        return self.partitions > 1 or self.always_on

    @property
    def alphabet(self) -> int:
        """Symbols per slot, the last one meaning "off" (none does when every slot is always on)."""
        return (self.K // self.partitions if self.partitioned else self.K) + (0 if self.always_on else 1)

    @cached_property
    def size(self) -> int:
        """N, the number of distinct codes."""
        if self.partitioned:
            return int(self.alphabet**self.L0)
        return math.comb(self.K + self.L0, self.L0)

    @property
    def bits(self) -> float:
        return math.log2(self.size)

    @property
    def enum_bytes(self) -> int:
        return max(1, math.ceil(math.ceil(self.bits) / 8))

    def validate(self, counts: IntArray) -> None:
        """Raise CodeFormatError unless every row of counts (B, K) is a code of this space."""
        c = np.asarray(counts)
        if c.ndim != 2 or c.shape[1] != self.K:
            raise CodeFormatError(f"codes must have K = {self.K} entries")
        if (c < 0).any() or (c.sum(1) > self.L0).any():
            raise CodeFormatError(f"counts must be non-negative and sum to at most L0 = {self.L0}")
        if self.partitioned:
            blocks = c.reshape(len(c), self.partitions, self.K // self.partitions)
            if (blocks.sum(2) > 1).any():
                raise CodeFormatError("a partitioned code holds at most one count per block")
            if self.always_on and (blocks.sum(2) != 1).any():
                raise CodeFormatError("every slot of this code is always on: each block holds exactly one count")

    # ------------------------------------------------------------------------------------ symbols

    def symbols(self, counts: IntArray) -> IntArray:
        """(B, K) counts -> (B, L0) slot symbols in [0, alphabet), alphabet - 1 = off."""
        c = np.asarray(counts, dtype=np.int64)
        off = self.alphabet - 1
        if self.partitioned:
            blocks = c.reshape(len(c), self.partitions, self.K // self.partitions)  # (B, M, K / M)
            return blocks.argmax(2) if self.always_on else np.where(blocks.sum(2) > 0, blocks.argmax(2), off)
        # the multiset sorted ascending, padded with "off" (the largest symbol) to L0 entries
        out = np.full((len(c), self.L0), off, dtype=np.int64)
        rows, idx = np.nonzero(c)
        reps = c[rows, idx]
        r = np.repeat(rows, reps)
        k = np.repeat(idx, reps)
        starts = np.concatenate([[0], np.cumsum(np.bincount(r, minlength=len(c)))[:-1]])
        out[r, np.arange(len(r)) - starts[r]] = k
        return out

    def counts(self, symbols: IntArray) -> IntArray:
        """(B, L0) slot symbols -> (B, K) counts; refuses sequences that are not a code's symbols."""
        s = np.asarray(symbols, dtype=np.int64)
        top = self.alphabet - 1
        if s.ndim != 2 or s.shape[1] != self.L0 or (s < 0).any() or (s > top).any():
            raise CodeFormatError(f"slot symbols must be (B, {self.L0}) in [0, {top}]")
        out = np.zeros((len(s), self.K), dtype=np.int64)
        on = np.ones(s.shape, dtype=bool) if self.always_on else s < top
        if self.partitioned:
            cat = s + np.arange(self.partitions) * (self.K // self.partitions)
        else:
            if (np.diff(s, axis=1) < 0).any():
                raise CodeFormatError("the slots of a shared code must be in increasing order")
            cat = s
        rows = np.broadcast_to(np.arange(len(s))[:, None], s.shape)
        np.add.at(out, (rows[on], cat[on]), 1)
        return out

    # --------------------------------------------------------------------------------- ranks (enum)

    def rank(self, counts: IntArray) -> list[int]:
        """Each code's index in [0, N): mixed radix over the blocks (partitioned), or the combinatorial
        number system over the sorted symbols (shared: b_i = s_i + i, rank = sum_i C(b_i, i + 1))."""
        s = self.symbols(counts)
        if self.enum_bytes <= 8:  # every rank fits in 64 bits: summed in numpy, no loop over the codes
            return list(self._ranks64(s).tolist())
        if self.partitioned:
            base = self.alphabet
            return [sum(int(v) * base**m for m, v in enumerate(row)) for row in s]
        b = s + np.arange(self.L0)
        return [sum(math.comb(int(v), i + 1) for i, v in enumerate(row)) for row in b]

    @cached_property
    def _terms64(self) -> npt.NDArray[np.uint64]:
        """The rank's terms by slot, when N <= 2^64: base^m (partitioned, (L0,)), or C(b, i + 1) for every
        b in [0, K + L0) and slot i (shared, (K + L0, L0)); each term is at most a rank, so below 2^64."""
        if self.partitioned:
            return np.array([self.alphabet**m for m in range(self.L0)], dtype=np.uint64)
        return np.array([[math.comb(b, i + 1) for i in range(self.L0)] for b in range(self.K + self.L0)],
                        dtype=np.uint64)

    def _ranks64(self, symbols: IntArray) -> npt.NDArray[np.uint64]:
        """rank of (B, L0) slot symbols as uint64 (the space's N <= 2^64; the sums never pass N - 1)."""
        if self.partitioned:
            return np.asarray((symbols.astype(np.uint64) * self._terms64).sum(axis=1, dtype=np.uint64))
        b = symbols + np.arange(self.L0)
        return np.asarray(self._terms64[b, np.arange(self.L0)].sum(axis=1, dtype=np.uint64))

    def enum_records(self, counts: IntArray) -> bytes:
        """The enum codes of every row of counts (B, K), one after another (B * enum_bytes bytes)."""
        n = self.enum_bytes
        if n <= 8:
            ranks = self._ranks64(self.symbols(counts)).astype("<u8")
            return ranks.view(np.uint8).reshape(len(ranks), 8)[:, :n].tobytes()  # the low n bytes, little-endian
        return b"".join(r.to_bytes(n, "little") for r in self.rank(counts))

    def unrank(self, ranks: Sequence[int]) -> IntArray:
        """Inverse of rank; a rank outside [0, N) is a CodeFormatError."""
        out = np.zeros((len(ranks), self.L0), dtype=np.int64)
        for j, r in enumerate(ranks):
            if not 0 <= r < self.size:
                raise CodeFormatError(f"code index {r} is outside the model's {self.size} codes")
            if self.partitioned:
                for m in range(self.L0):
                    r, out[j, m] = divmod(r, self.alphabet)
                continue
            for i in range(self.L0, 0, -1):  # the largest b with C(b, i) <= r, from the top slot down
                lo, hi = i - 1, self.K + i - 1  # C(lo, i) = 0 <= r; b_i <= K + i - 1
                while lo < hi:
                    mid = (lo + hi + 1) // 2
                    lo, hi = (mid, hi) if math.comb(mid, i) <= r else (lo, mid - 1)
                r -= math.comb(lo, i)
                out[j, i - 1] = lo - (i - 1)
        return self.counts(out)


@dataclass(frozen=True)
class EntropyModel:
    """Per-slot symbol probabilities (L0, alphabet) for the range format."""

    probabilities: npt.NDArray[np.float64]

    @classmethod
    def fit(cls, space: CodeSpace, counts: IntArray, prior: float = 0.5) -> EntropyModel:
        """Slot-symbol frequencies of training codes plus `prior` per symbol (every code stays codable)."""
        s = space.symbols(counts)
        freq = np.stack([np.bincount(s[:, i], minlength=space.alphabet) for i in range(space.L0)]) + prior
        return cls(freq / freq.sum(1, keepdims=True))

    def bits(self, space: CodeSpace, counts: IntArray) -> npt.NDArray[np.float64]:
        """-log2 P(code) under the model, per code: the information the range format approaches."""
        s = space.symbols(counts)
        return np.asarray(-np.log2(self.probabilities[np.arange(space.L0), s]).sum(1))

    def _models(self, n: int) -> tuple[object, npt.NDArray[np.float64]]:
        import constriction

        family = constriction.stream.model.Categorical(perfect=False)
        return family, np.tile(self.probabilities, (n, 1))

    def encode(self, space: CodeSpace, counts: IntArray) -> bytes:
        """All rows of counts as one range-coded message."""
        import constriction

        s = space.symbols(counts).reshape(-1).astype(np.int32)
        family, probs = self._models(len(counts))
        coder = constriction.stream.stack.AnsCoder()
        coder.encode_reverse(s, family, probs)
        return np.asarray(coder.get_compressed(), dtype="<u4").tobytes()

    def decode(self, space: CodeSpace, blob: bytes, n: int) -> IntArray:
        """n codes from one message (the likeliest code can take 0 words); refuses a ragged or over-long one."""
        import constriction

        if len(blob) % RANGE_WORD_BYTES:
            raise CodeFormatError(f"a range-coded message is a whole number of {RANGE_WORD_BYTES}-byte words, "
                                  f"not {len(blob)} bytes")
        family, probs = self._models(n)
        try:
            coder = constriction.stream.stack.AnsCoder(np.frombuffer(blob, dtype="<u4").astype(np.uint32))
            s = np.asarray(coder.decode(family, probs), dtype=np.int64).reshape(n, space.L0)
        except (ValueError, RuntimeError) as exc:
            raise CodeFormatError(f"the range-coded message does not decode: {exc}") from exc
        if not coder.is_empty():
            raise CodeFormatError("the range-coded message is corrupt: data is left after its codes")
        return space.counts(s)


def pack_stream(fmt: Format, counts: IntArray, space: CodeSpace,
                entropy: EntropyModel | None) -> tuple[bytes, IntArray]:
    """One message per row of counts (B, K) in the format, one after another: (the bytes, the (B + 1,)
    offsets of the messages in them). v1 and enum are built for the whole batch at once; range codes each
    row as its own message."""
    c = np.asarray(counts, dtype=np.int64)
    if fmt == "v1":
        return codes.pack_rows(c, space.K)
    if fmt == "enum":
        return space.enum_records(c), np.arange(len(c) + 1, dtype=np.int64) * space.enum_bytes
    blobs = [_require(entropy).encode(space, row[None]) for row in c]
    offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, blobs), dtype=np.int64, count=len(blobs)), out=offsets[1:])
    return b"".join(blobs), offsets


def split_stream(data: bytes, offsets: IntArray) -> list[bytes]:
    """The messages of pack_stream, each its own bytes."""
    bounds = offsets.tolist()
    return [data[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def pack(fmt: Format, counts: IntArray, space: CodeSpace, entropy: EntropyModel | None) -> list[bytes]:
    """One message per row of counts (B, K) in the format."""
    return split_stream(*pack_stream(fmt, counts, space, entropy))


def unpack(fmt: Format, blob: bytes, space: CodeSpace, entropy: EntropyModel | None) -> IntArray:
    """One message -> the (K,) counts of its code, validated."""
    if fmt == "v1":
        idx, cnt = codes.unpack(blob, space.K, space.L0)
        row = np.zeros((1, space.K), dtype=np.int64)
        row[0, idx] = cnt
        space.validate(row)
        return row[0]
    if fmt == "enum":
        if len(blob) != space.enum_bytes:
            raise CodeFormatError(f"an enum code of this model is {space.enum_bytes} bytes, not {len(blob)}")
        return space.unrank([int.from_bytes(blob, "little")])[0]
    return _require(entropy).decode(space, blob, 1)[0]


def _require(entropy: EntropyModel | None) -> EntropyModel:
    if entropy is None:
        raise CodeFormatError("this model has no entropy model, so no range format; use v1 or enum")
    return entropy
