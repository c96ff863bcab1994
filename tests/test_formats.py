"""Code formats (bundle.formats): every format round-trips every code of a space (brute force on small
spaces, hypothesis on large ones), the enum index is a bijection onto [0, N), the range format's length
follows the entropy model, and corrupt or truncated messages are refused with CodeFormatError."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bundle.codes import CodeFormatError, to_sparse
from bundle.codes import pack as packed_code
from bundle.formats import FORMATS, CodeSpace, EntropyModel, pack, unpack

SMALL = [CodeSpace(K=5, L0=3), CodeSpace(K=6, L0=3, partitions=3), CodeSpace(K=2, L0=1),
         CodeSpace(K=6, L0=3, partitions=3, always_on=True), CodeSpace(K=5, L0=1, always_on=True)]
LARGE = [CodeSpace(K=64, L0=4), CodeSpace(K=200, L0=40), CodeSpace(K=1024, L0=4, partitions=4),
         CodeSpace(K=300, L0=3), CodeSpace(K=1024, L0=4, partitions=4, always_on=True),
         CodeSpace(K=4096, L0=16, partitions=16, always_on=True), CodeSpace(K=200, L0=40, partitions=40)]


def all_codes(space: CodeSpace) -> np.ndarray:
    """Every code of a small space, by brute force over count vectors."""
    rows = []
    for c in itertools.product(range(space.L0 + 1), repeat=space.K):
        row = np.array(c)
        if row.sum() > space.L0:
            continue
        if space.partitioned and (row.reshape(space.partitions, -1).sum(1) > 1).any():
            continue
        if space.always_on and (row.reshape(space.partitions, -1).sum(1) != 1).any():
            continue
        rows.append(row)
    return np.array(rows)


@st.composite
def codes_of(draw: st.DrawFn, space: CodeSpace) -> np.ndarray:
    row = np.zeros(space.K, dtype=np.int64)
    if space.partitioned:
        size = space.K // space.partitions
        for m in range(space.partitions):
            j = draw(st.integers(0 if space.always_on else -1, size - 1))
            if j >= 0:
                row[m * size + j] = 1
        return row
    for k in draw(st.lists(st.integers(0, space.K - 1), max_size=space.L0)):
        row[k] += 1
    return row


def model_for(space: CodeSpace, seed: int = 0) -> EntropyModel:
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(space.alphabet), size=space.L0)
    return EntropyModel(p)


@pytest.mark.parametrize("space", SMALL, ids=str)
def test_the_space_size_counts_every_code_and_rank_is_a_bijection(space: CodeSpace) -> None:
    codes = all_codes(space)
    assert space.size == len(codes)
    ranks = space.rank(codes)
    assert sorted(ranks) == list(range(space.size))
    assert np.array_equal(space.unrank(ranks), codes)


@pytest.mark.parametrize("space", SMALL, ids=str)
@pytest.mark.parametrize("fmt", FORMATS)
def test_every_code_of_a_small_space_round_trips(space: CodeSpace, fmt: str) -> None:
    codes = all_codes(space)
    entropy = model_for(space)
    blobs = pack(fmt, codes, space, entropy)  # type: ignore[arg-type]
    back = np.stack([unpack(fmt, b, space, entropy) for b in blobs])  # type: ignore[arg-type]
    assert np.array_equal(back, codes)


@pytest.mark.parametrize("space", LARGE, ids=str)
def test_random_codes_of_large_spaces_round_trip_in_every_format(space: CodeSpace) -> None:
    entropy = model_for(space)

    @settings(max_examples=60, deadline=None)
    @given(st.lists(codes_of(space), min_size=1, max_size=4))
    def check(rows: list[np.ndarray]) -> None:
        codes = np.stack(rows)
        for fmt in FORMATS:
            blobs = pack(fmt, codes, space, entropy)
            assert np.array_equal(np.stack([unpack(fmt, b, space, entropy) for b in blobs]), codes), fmt
        assert all(len(b) == space.enum_bytes for b in pack("enum", codes, space, entropy))
        stream = entropy.encode(space, codes)
        assert np.array_equal(entropy.decode(space, stream, len(codes)), codes)

    check()


# Spaces at the edge of the 64-bit enum path: N = 2^64 exactly, N just under it, and one just over.
EDGE = [CodeSpace(K=2048, L0=8, partitions=8, always_on=True), CodeSpace(K=1000, L0=7), CodeSpace(K=2000, L0=7)]


def reference_rank(space: CodeSpace, counts: np.ndarray) -> list[int]:
    """The rank in Python integers, one code at a time (the definition of the enum format)."""
    s = space.symbols(counts)
    if space.partitioned:
        return [sum(int(v) * space.alphabet**m for m, v in enumerate(row)) for row in s]
    return [sum(math.comb(int(v) + i, i + 1) for i, v in enumerate(row)) for row in s]


@pytest.mark.parametrize("space", SMALL + LARGE + EDGE, ids=str)
def test_batch_packing_gives_the_bytes_of_packing_each_code_alone(space: CodeSpace) -> None:
    assert [s.enum_bytes for s in EDGE] == [8, 8, 9]

    @settings(max_examples=40, deadline=None)
    @given(st.lists(codes_of(space), min_size=0, max_size=6))
    def check(rows: list[np.ndarray]) -> None:
        codes = np.stack(rows) if rows else np.zeros((0, space.K), dtype=np.int64)
        ranks = reference_rank(space, codes)
        assert space.rank(codes) == ranks
        assert pack("enum", codes, space, None) == [r.to_bytes(space.enum_bytes, "little") for r in ranks]
        assert pack("v1", codes, space, None) == [packed_code(*to_sparse(row), space.K) for row in codes]

    check()


def test_enum_bytes_are_the_information_of_the_space_rounded_up() -> None:
    assert CodeSpace(K=64, L0=4).size == math.comb(68, 4) == 814_385  # 19.6 bits
    assert CodeSpace(K=64, L0=4).enum_bytes == 3
    assert CodeSpace(K=1024, L0=4, partitions=4).size == 257**4  # 32.02 bits: 5 bytes
    assert CodeSpace(K=1024, L0=4, partitions=4).enum_bytes == 5
    assert CodeSpace(K=2, L0=1).enum_bytes == 1
    # every slot always on: 256 categories per slot are exactly one byte each
    assert CodeSpace(K=1024, L0=4, partitions=4, always_on=True).size == 256**4
    assert CodeSpace(K=1024, L0=4, partitions=4, always_on=True).enum_bytes == 4
    assert CodeSpace(K=4096, L0=16, partitions=16, always_on=True).enum_bytes == 16
    assert CodeSpace(K=256, L0=1, always_on=True).size == 256  # one slot: a plain 8-bit quantizer index
    assert CodeSpace(K=256, L0=1, always_on=True).enum_bytes == 1


def test_a_range_coded_stream_costs_about_its_information() -> None:
    space = CodeSpace(K=64, L0=4)
    rng = np.random.default_rng(1)
    train = np.zeros((4000, space.K), dtype=np.int64)
    for row in train:  # codes concentrated on a few categories: far below the 19.6 bits of enum
        for k in rng.choice(8, size=rng.integers(0, 5), p=[0.4, 0.2, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05]):
            row[k] += 1
    model = EntropyModel.fit(space, train)
    bits = model.bits(space, train).sum()
    real = 8 * len(model.encode(space, train))
    assert bits < 19.6 * len(train) / 2
    assert bits <= real <= bits * 1.01 + 64


@pytest.mark.parametrize(("space", "fmt", "blob", "why"), [
    (CodeSpace(K=64, L0=4), "enum", b"\x00\x00", "3 bytes"),
    (CodeSpace(K=64, L0=4), "enum", b"\x00\x00\x00\x00", "3 bytes"),
    (CodeSpace(K=64, L0=4), "enum", (814_385).to_bytes(3, "little"), "outside"),
    (CodeSpace(K=64, L0=4), "enum", b"\xff\xff\xff", "outside"),
    (CodeSpace(K=64, L0=4), "range", b"\x01\x02\x03\x04\x05", "whole number"),
    (CodeSpace(K=64, L0=4), "range", b"\x01\x02\x03", "whole number"),
    (CodeSpace(K=8, L0=4, partitions=4), "v1", bytes([1, 2, 0, 1, 1, 1]), "one count per block"),
    (CodeSpace(K=8, L0=4), "v1", bytes([1, 1, 9, 1]), "indices must lie"),
    (CodeSpace(K=8, L0=4, partitions=4, always_on=True), "v1", bytes([1, 3, 0, 2, 4, 1, 1, 1]), "always on"),
    (CodeSpace(K=8, L0=4, partitions=4, always_on=True), "enum", b"\x10", "outside"),
    (CodeSpace(K=8, L0=4, partitions=4, always_on=True), "enum", b"\x00\x00", "1 bytes"),
])
def test_corrupt_or_truncated_messages_are_refused(space: CodeSpace, fmt: str, blob: bytes, why: str) -> None:
    with pytest.raises(CodeFormatError, match=why):
        unpack(fmt, blob, space, model_for(space))  # type: ignore[arg-type]


def test_truncated_or_extended_range_messages_are_refused() -> None:
    space = CodeSpace(K=64, L0=4)
    model = model_for(space)
    codes = np.zeros((6, space.K), dtype=np.int64)
    codes[:, 3] = 2
    codes[:, 40] = 1
    blob = model.encode(space, codes)
    assert len(blob) >= 8
    for bad in (blob[:-4], blob + b"\x00\x00\x00\x01", b"\x00" * len(blob)):
        with pytest.raises(CodeFormatError):
            model.decode(space, bad, len(codes))


def test_a_shared_code_out_of_order_or_a_partition_misfit_is_not_a_code() -> None:
    with pytest.raises(CodeFormatError, match="increasing order"):
        CodeSpace(K=5, L0=3).counts(np.array([[3, 1, 5]]))
    with pytest.raises(ValueError, match="partitions"):
        CodeSpace(K=10, L0=4, partitions=4)


def test_the_range_format_needs_an_entropy_model() -> None:
    space = CodeSpace(K=5, L0=3)
    with pytest.raises(CodeFormatError, match="no entropy model"):
        pack("range", np.zeros((1, 5), dtype=np.int64), space, None)


def test_validate_refuses_codes_of_another_shape_or_sum() -> None:
    space = CodeSpace(K=4, L0=2)
    space.validate(np.array([[1, 0, 1, 0]]))
    for bad, why in ((np.zeros((1, 5), np.int64), "K = 4 entries"), (np.zeros(4, np.int64), "K = 4 entries"),
                     (np.array([[2, 0, 1, 0]]), "at most L0 = 2"), (np.array([[-1, 0, 0, 0]]), "non-negative")):
        with pytest.raises(CodeFormatError, match=why):
            space.validate(bad)
    with pytest.raises(CodeFormatError, match="one count per block"):
        CodeSpace(K=4, L0=2, partitions=2).validate(np.array([[1, 1, 0, 0]]))


def test_only_a_partitioned_space_can_keep_every_slot_on() -> None:
    with pytest.raises(ValueError, match="always on"):
        CodeSpace(K=4, L0=2, partitions=1, always_on=True)
    on = CodeSpace(K=6, L0=3, partitions=3, always_on=True)
    assert on.alphabet == 2 and on.size == 8  # no "off" symbol: 2 categories per slot, 3 slots
    assert np.array_equal(on.symbols(np.array([[0, 1, 1, 0, 0, 1]])), [[1, 0, 1]])
