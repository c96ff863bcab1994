"""What each bundle is as KServe V2 models: `<bundle>-encode`, `<bundle>-decode` (bundles with a decoder)
and `<bundle>-predict` (supervised bundles), their declared tensors, and the numpy work of each around
the operation they run (service.batching).

  <bundle>-encode   x FP32 [-1, D] -> indices INT32 [-1, L0] (padded with -1), counts INT32 [-1, L0]
                    (padded with 0), L_hat INT64 [-1], code BYTES [-1] (each code in format v1)
  <bundle>-decode   code BYTES [-1], or indices and counts INT32 [-1, L0] as encode gives them
                    -> x_hat FP32 [-1, D]
  <bundle>-predict  x FP32 [-1, D] -> probabilities FP32 [-1, K], labels BOOL [-1, K] (at the thresholds)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bundle import formats
from bundle.codes import CodeFormatError
from bundle.formats import CodeSpace
from bundle.runtime import F32, ModelRuntime
from service.batching import Output
from service.binary import counts_of
from service.errors import ServiceError, bad_input
from service.kserve import Array, TensorSpec

OPERATIONS = ("encode", "decode", "predict")
Outputs = dict[str, tuple[str, Array]]


@dataclass(frozen=True)
class V2Model:
    """One operation of one bundle as a V2 model: `prepare` validates a request's inputs into the rows the
    operation runs on (400 otherwise; on the event loop, before the request joins a batch), and `respond`
    makes the outputs from the operation's outputs for those rows (service.batching, in a worker thread)."""

    name: str
    runtime: ModelRuntime
    operation: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    prepare: Callable[[dict[str, Array]], F32]
    respond: Callable[[Output], Outputs]

    def output_names(self) -> list[str]:
        return [o.name for o in self.outputs]


def padded(counts: np.ndarray, L0: int) -> tuple[Array, Array]:
    """(B, K) counts -> indices (B, L0) padded with -1 and their counts (B, L0) padded with 0."""
    rows, idx = np.nonzero(counts)  # row-major: each row's indices increasing
    starts = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=len(counts)))[:-1]])
    pos = np.arange(len(rows)) - starts[rows]
    indices = np.full((len(counts), L0), -1, dtype=np.int32)
    values = np.zeros((len(counts), L0), dtype=np.int32)
    indices[rows, pos] = idx
    values[rows, pos] = counts[rows, idx]
    return indices, values


def _first(bad: Array, why: str) -> None:
    if bad.any():
        raise bad_input(f"codes[{int(np.argmax(bad))}] is not a code of this model: {why}")


def dense(indices: Array, counts: Array, space: CodeSpace) -> F32:
    """(B, K) float32 counts from padded indices and counts (B, L0), every row validated."""
    pad = indices == -1
    _first((pad & (counts != 0)).any(axis=1), "counts must be 0 where indices are -1 (padding)")
    _first((~pad & ((indices < 0) | (indices >= space.K))).any(axis=1),
           f"indices must lie in [0, {space.K - 1}], or be -1 as padding")
    _first((~pad & (counts < 1)).any(axis=1), "counts must be positive")
    rows = np.broadcast_to(np.arange(len(indices))[:, None], indices.shape)
    seen = np.zeros((len(indices), space.K), dtype=np.int64)
    np.add.at(seen, (rows[~pad], indices[~pad]), 1)
    _first(np.asarray((seen > 1).any(axis=1)), "indices must not repeat")
    z = np.zeros((len(indices), space.K), dtype=np.int64)
    z[rows[~pad], indices[~pad]] = counts[~pad]
    _first(np.asarray(z.sum(axis=1) > space.L0), f"counts sum to over L0 = {space.L0}")
    try:
        space.validate(z)
    except CodeFormatError as exc:
        raise bad_input(f"the codes are not codes of this model: {exc}") from exc
    return z.astype(np.float32)


def check_batch(n: int, max_batch: int) -> None:
    if n == 0:
        raise bad_input("empty batch: the inputs' first dimension must be at least 1")
    if n > max_batch:
        raise bad_input(f"batch of {n} is over the maximum of {max_batch} (SDLGM_MAX_BATCH)")


def _rows(inputs: dict[str, Array]) -> F32:
    return np.ascontiguousarray(inputs["x"], dtype=np.float32)


def _encode(runtime: ModelRuntime) -> Callable[[Output], Outputs]:
    m = runtime.manifest

    def respond(outputs: Output) -> Outputs:
        L_hat, counts = outputs
        indices, values = padded(counts, m.L0)
        code = np.empty(len(counts), dtype=object)
        code[:] = formats.pack("v1", counts, m.code_space, None)
        return {"indices": ("INT32", indices), "counts": ("INT32", values), "L_hat": ("INT64", L_hat),
                "code": ("BYTES", code)}

    return respond


def decode_input(inputs: dict[str, Array], space: CodeSpace) -> F32:
    """The (B, K) counts of a decode request: from `code`, or from `indices` and `counts`."""
    if "code" in inputs:
        if "indices" in inputs or "counts" in inputs:
            raise bad_input("give the codes as 'code' or as 'indices' and 'counts', not both")
        return counts_of("v1", list(inputs["code"]), space, None)
    if "indices" not in inputs or "counts" not in inputs:
        raise bad_input("give the codes as 'code' (BYTES, format v1) or as both 'indices' and 'counts'")
    if inputs["indices"].shape != inputs["counts"].shape:
        raise bad_input(f"'indices' has shape {list(inputs['indices'].shape)} but 'counts' "
                        f"{list(inputs['counts'].shape)}")
    return dense(inputs["indices"].astype(np.int64), inputs["counts"].astype(np.int64), space)


def _decoded(outputs: Output) -> Outputs:
    return {"x_hat": ("FP32", outputs[0])}


def _predict(thresholds: list[float]) -> Callable[[Output], Outputs]:
    t = np.asarray(thresholds)

    def respond(outputs: Output) -> Outputs:
        probs, _ = outputs
        return {"probabilities": ("FP32", probs.astype(np.float32)), "labels": ("BOOL", probs >= t)}

    return respond


def v2_models(runtime: ModelRuntime) -> dict[str, V2Model]:
    """The V2 models of one loaded bundle, by V2 name."""
    m = runtime.manifest
    D, K, L0 = m.D, m.K, m.L0
    x = TensorSpec("x", "FP32", (-1, D))
    sparse = (TensorSpec("indices", "INT32", (-1, L0)), TensorSpec("counts", "INT32", (-1, L0)))
    code = TensorSpec("code", "BYTES", (-1,))
    out = {"encode": V2Model(f"{runtime.name}-encode", runtime, "encode", (x,),
                             (*sparse, TensorSpec("L_hat", "INT64", (-1,)), code), _rows, _encode(runtime))}
    if runtime.has_decoder:
        out["decode"] = V2Model(f"{runtime.name}-decode", runtime, "decode", (code, *sparse),
                                (TensorSpec("x_hat", "FP32", (-1, D)),),
                                lambda inputs: decode_input(inputs, m.code_space), _decoded)
    if m.thresholds is not None:
        out["predict"] = V2Model(f"{runtime.name}-predict", runtime, "predict", (x,),
                                 (TensorSpec("probabilities", "FP32", (-1, K)), TensorSpec("labels", "BOOL", (-1, K))),
                                 _rows, _predict(m.thresholds))
    return {v.name: v for v in out.values()}


def resolve(name: str, runtimes: dict[str, ModelRuntime]) -> V2Model:
    """The V2 model of this name; 404 listing the served ones."""
    bundle, _, operation = name.rpartition("-")
    if bundle in runtimes and operation in OPERATIONS:
        found = v2_models(runtimes[bundle]).get(name)
        if found is not None:
            return found
    served = ", ".join(sorted(n for r in runtimes.values() for n in v2_models(r))) or "none"
    raise ServiceError(404, "unknown_model", f"model {name!r} is not served; models: {served}")
