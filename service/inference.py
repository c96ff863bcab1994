"""The glue between request bodies and a ModelRuntime: checks that need the model (dimension, batch size,
code validity), the 503 of a request past its time limit, and building codes.
"""

from __future__ import annotations

import base64
import binascii

import numpy as np

from bundle import codes, formats
from bundle.formats import CodeSpace, EntropyModel, Format
from bundle.manifest import Manifest
from bundle.runtime import F32
from service.errors import ServiceError, bad_input
from service.schemas import CodeIn, CodeOut


def timeout_error(timeout_s: float) -> ServiceError:
    return ServiceError(503, "timeout", f"the request took longer than the request timeout of {timeout_s} s "
                        "(SDLGM_REQUEST_TIMEOUT_S: reading, parsing, queueing, inference and answering); retry "
                        "later or with a smaller batch")


def check_batch(n: int, max_batch: int, what: str) -> None:
    if n == 0:
        raise bad_input(f"empty batch: send at least one {what}")
    if n > max_batch:
        raise bad_input(f"batch of {n} {what}s is over the maximum of {max_batch} (SDLGM_MAX_BATCH)")


def as_matrix(rows: list[list[float]], D: int, max_batch: int) -> F32:
    """Validated (B, D) float32 matrix of raw vectors."""
    check_batch(len(rows), max_batch, "vector")
    for i, row in enumerate(rows):
        if len(row) != D:
            raise bad_input(f"vector {i} has {len(row)} values; this model takes D = {D}")
    x = np.asarray(rows, dtype=np.float32)
    if not np.isfinite(x).all():
        raise bad_input("values must fit in float32 (|x| < 3.4e38)")
    return x


def check_format(fmt: Format, manifest: Manifest, served: str) -> None:
    """422 unless the model served as `served` (its directory name, not the manifest's name) serves fmt."""
    if fmt not in manifest.formats:
        raise ServiceError(422, "unsupported", f"model {served!r} does not serve the {fmt!r} format; it "
                           f"serves {', '.join(manifest.formats)}")


def codes_out(L_hat: codes.IntArray, counts: codes.IntArray, space: CodeSpace, fmt: Format = "v1",
              entropy: EntropyModel | None = None) -> list[CodeOut]:
    """The response codes of a batch: L_hat (B,), counts (B, K), their binary form in `fmt` (checked against
    the model with check_format). The sparse rows and the binary codes are built for the whole batch at
    once; each code is then slices of them. Built without re-validation: every field is derived from the
    model's output."""
    idx, cnt, offsets = codes.sparse_rows(counts)
    data, ends = formats.pack_stream(fmt, counts, space, entropy)
    indices, values, at, bounds = idx.tolist(), cnt.tolist(), offsets.tolist(), ends.tolist()
    b64 = base64.b64encode
    return [CodeOut.model_construct(indices=indices[a:b], counts=values[a:b], L_hat=L, nnz=b - a,
                                    binary=b64(data[lo:hi]).decode("ascii"), size_bytes=hi - lo)
            for L, a, b, lo, hi in zip(L_hat.tolist(), at[:-1], at[1:], bounds[:-1], bounds[1:], strict=True)]


def _counts(i: int, item: CodeIn, space: CodeSpace, fmt: Format, entropy: EntropyModel | None) -> codes.IntArray:
    try:
        if item.binary is not None:
            try:
                blob = base64.b64decode(item.binary, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise bad_input(f"codes[{i}].binary is not valid base64: {exc}") from exc
            return formats.unpack(fmt, blob, space, entropy)
        idx = np.asarray(item.indices, dtype=np.int64)
        cnt = np.asarray(item.counts, dtype=np.int64)
        codes.validate_sparse(idx, cnt, space.K, space.L0)
        row = np.zeros((1, space.K), dtype=np.int64)
        row[0, idx] = cnt
        space.validate(row)
        return row[0]
    except codes.CodeFormatError as exc:
        raise bad_input(f"codes[{i}] is not a code of this model: {exc}") from exc
    except OverflowError as exc:
        raise bad_input(f"codes[{i}] is not a code of this model: indices must lie in [0, {space.K - 1}] "
                        f"and counts sum to at most L0 = {space.L0}") from exc


def as_counts(items: list[CodeIn], space: CodeSpace, max_batch: int, fmt: Format = "v1",
              entropy: EntropyModel | None = None) -> F32:
    """Validated (B, K) float32 counts from codes in either form (`binary` in the format fmt, checked
    against the model with check_format)."""
    check_batch(len(items), max_batch, "code")
    z = np.zeros((len(items), space.K), dtype=np.float32)
    for i, item in enumerate(items):
        z[i] = _counts(i, item, space, fmt, entropy)
    return z
