"""service.inference without an app or a model: the checks that need the model's D, K, L0 and the batch
limit, each refusal with its exact status, kind and message; the dense counts and response codes built
by hand; the inference time limit."""

from __future__ import annotations

import base64
from collections.abc import Callable

import numpy as np
import pytest

from bundle.formats import CodeSpace
from service.errors import ServiceError
from service.inference import as_counts, as_matrix, check_batch, codes_out
from service.schemas import CodeIn

D, K, L0, MAX = 3, 10, 4, 2


def refusal(fn: Callable[[], object]) -> tuple[int, str, str]:
    with pytest.raises(ServiceError) as info:
        fn()
    return info.value.status, info.value.kind, info.value.message


def bad(message: str) -> tuple[int, str, str]:
    return 400, "invalid_input", message


# --- vectors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("rows", "message"), [
    ([], "empty batch: send at least one vector"),
    ([[0.0] * D] * (MAX + 1), f"batch of {MAX + 1} vectors is over the maximum of {MAX} (SDLGM_MAX_BATCH)"),
    ([[0.0] * (D - 1)], f"vector 0 has {D - 1} values; this model takes D = {D}"),
    ([[0.0] * D, [0.0] * (D + 1)], f"vector 1 has {D + 1} values; this model takes D = {D}"),
    ([[0.0, 1e39, 0.0]], "values must fit in float32 (|x| < 3.4e38)"),
    ([[0.0] * D, [-1e39, 0.0, 0.0]], "values must fit in float32 (|x| < 3.4e38)"),
    ([[0.0, 0.0, float("nan")]], "values must fit in float32 (|x| < 3.4e38)"),
    ([[float("inf"), 0.0, 0.0]], "values must fit in float32 (|x| < 3.4e38)"),
], ids=["empty", "over max", "short", "long second", "overflow", "negative overflow", "nan", "inf"])
def test_as_matrix_refuses(rows: list[list[float]], message: str) -> None:
    with np.errstate(over="ignore"):
        assert refusal(lambda: as_matrix(rows, D, MAX)) == bad(message)


def test_as_matrix_gives_the_float32_matrix() -> None:
    rows = [[1.5, -2.0, 3.4e38], [0.0, 1e-3, -7.25]]  # MAX rows, the largest float32 magnitude
    x = as_matrix(rows, D, MAX)
    assert x.dtype == np.float32 and x.shape == (2, D)
    assert np.array_equal(x, np.array(rows, dtype=np.float32))


@pytest.mark.parametrize(("n", "message"), [(0, "empty batch: send at least one code"),
                                            (MAX + 1, f"batch of {MAX + 1} codes is over the maximum of {MAX} "
                                                      "(SDLGM_MAX_BATCH)")])
def test_check_batch_names_what_the_batch_holds(n: int, message: str) -> None:
    assert refusal(lambda: check_batch(n, MAX, "code")) == bad(message)


@pytest.mark.parametrize("n", [1, MAX])
def test_check_batch_passes_within_the_limit(n: int) -> None:
    check_batch(n, MAX, "code")


# --- codes --------------------------------------------------------------------------------------------


def sparse(indices: list[int], counts: list[int]) -> CodeIn:
    """A code as given, unvalidated: the schema refuses negative indices and counts below 1 (tests/service_cases.py
    has those cases over HTTP); check_codes still holds on its own for any code it is given."""
    return CodeIn.model_construct(indices=indices, counts=counts, binary=None)


def binary(raw: bytes) -> CodeIn:
    return CodeIn(binary=base64.b64encode(raw).decode())


def not_a_code(i: int, why: str) -> str:
    return f"codes[{i}] is not a code of this model: {why}"


RANGE = f"indices must lie in [0, {K - 1}]"
OVERFLOW = f"indices must lie in [0, {K - 1}] and counts sum to at most L0 = {L0}"


@pytest.mark.parametrize(("items", "message"), [
    ([], "empty batch: send at least one code"),
    ([sparse([], [])] * (MAX + 1), f"batch of {MAX + 1} codes is over the maximum of {MAX} (SDLGM_MAX_BATCH)"),
    ([sparse([K], [1])], not_a_code(0, RANGE)),
    ([sparse([1], [1]), sparse([-1], [1])], not_a_code(1, RANGE)),
    ([sparse([2**63], [1])], not_a_code(0, OVERFLOW)),
    ([sparse([1], [2**64])], not_a_code(0, OVERFLOW)),
    ([sparse([2, 2], [1, 1])], not_a_code(0, "indices must not repeat")),
    ([sparse([2, 3], [1, 0])], not_a_code(0, "counts must be positive")),
    ([sparse([2, 3], [3, 2])], not_a_code(0, f"counts sum to 5, over L0 = {L0}")),
    ([sparse([2, 3], [1])], not_a_code(0, "2 indices but 1 counts")),
    ([CodeIn(binary="@@")], "codes[0].binary is not valid base64: Only base64 data is allowed"),
    ([binary(bytes([1, 0])), CodeIn(binary="AQA")], "codes[1].binary is not valid base64: Incorrect padding"),
    ([binary(bytes([1]))], not_a_code(0, "code is 1 bytes; a code has at least 2")),
    ([binary(bytes([3, 0]))], not_a_code(0, "code format version 3 is not supported (expected 1)")),
    ([binary(bytes([1, 1, 5]))], not_a_code(0, "code declares 1 non-zeros, so 4 bytes, but has 3")),
    ([binary(bytes([1, 1, K, 1]))], not_a_code(0, RANGE)),
    ([binary(bytes([1, 2, 4, 4, 1, 1]))], not_a_code(0, "indices must not repeat")),
    ([binary(bytes([1, 1, 4, 0]))], not_a_code(0, "counts must be positive")),
    ([binary(bytes([1, 2, 4, 5, 4, 1]))], not_a_code(0, f"counts sum to 5, over L0 = {L0}")),
], ids=lambda v: v if isinstance(v, str) else None)
def test_as_counts_refuses(items: list[CodeIn], message: str) -> None:
    assert refusal(lambda: as_counts(items, CodeSpace(K, L0), MAX)) == bad(message)


def test_as_counts_gives_dense_float32_counts_from_both_forms() -> None:
    items = [sparse([1, 7], [3, 1]), binary(bytes([1, 3, 0, 4, 9, 1, 1, 2]))]
    z = as_counts(items, CodeSpace(K, L0), MAX)
    want = np.zeros((2, K), np.float32)
    want[0, [1, 7]] = [3, 1]
    want[1, [0, 4, 9]] = [1, 1, 2]
    assert z.dtype == np.float32 and np.array_equal(z, want)


def test_as_counts_reads_two_byte_indices_when_K_is_over_256() -> None:
    blob = bytes([1, 2]) + (5).to_bytes(2, "little") + (300).to_bytes(2, "little") + bytes([2, 1])
    z = as_counts([binary(blob), sparse([], [])], CodeSpace(301, L0), MAX)
    assert z.shape == (2, 301) and (z[0, 5], z[0, 300], z[0].sum(), z[1].sum()) == (2, 1, 3, 0)


def test_codes_out_builds_each_code_with_its_binary_form() -> None:
    counts = np.array([[0, 2, 0, 1], [0, 0, 0, 0], [4, 0, 0, 0]], dtype=np.int64)
    out = codes_out(np.array([3, 0, 4]), counts, CodeSpace(K=4, L0=4))
    assert [c.model_dump() for c in out] == [
        {"indices": [1, 3], "counts": [2, 1], "L_hat": 3, "nnz": 2, "binary": base64.b64encode(bytes([1, 2, 1, 3, 2, 1])).decode(),
         "size_bytes": 6},
        {"indices": [], "counts": [], "L_hat": 0, "nnz": 0, "binary": "AQA=", "size_bytes": 2},
        {"indices": [0], "counts": [4], "L_hat": 4, "nnz": 1, "binary": base64.b64encode(bytes([1, 1, 0, 4])).decode(),
         "size_bytes": 4},
    ]


def test_check_format_refuses_a_format_the_model_does_not_serve_by_its_served_name() -> None:
    from types import SimpleNamespace

    from service.inference import check_format

    m = SimpleNamespace(name="tiny-as-trained", formats=("v1", "enum"))
    check_format("enum", m, "tiny")  # type: ignore[arg-type]
    assert refusal(lambda: check_format("range", m, "tiny")) == (  # type: ignore[arg-type]
        422, "unsupported", "model 'tiny' does not serve the 'range' format; it serves v1, enum")
