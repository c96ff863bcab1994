"""POST /encode: raw vectors -> sparse codes (indices, counts, L_hat, binary form); a JSON body, or float32
rows as application/octet-stream (service.binary) answered with framed codes when Accept asks for them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

import numpy as np
from fastapi import APIRouter, Query, Request, Response

from bundle import formats
from bundle.codes import IntArray
from bundle.formats import Format
from bundle.runtime import F32
from service import binary
from service.deps import Call, CallDep
from service.errors import ERROR_RESPONSES
from service.fastjson import FastJSONRoute
from service.inference import as_matrix, check_format, codes_out
from service.quality import roundtrip_nrmse
from service.schemas import FORMAT_DESCRIPTION, EncodeRequest, EncodeResponse

T = TypeVar("T")
router = APIRouter(route_class=FastJSONRoute, tags=["codes"])
BINARY_BODY = {"requestBody": {"content": {binary.OCTET_STREAM: {"schema": {"type": "string", "format": "binary"}}}}}


async def _codes(call: Call, x: F32, rng: np.random.Generator | None, build: Callable[[IntArray, IntArray], T]) -> T:
    """build(L_hat, counts) of the rows' codes, off the event loop (coalesced with other requests' rows
    unless the code is stochastic), with the batch's metrics and, for a sampled request, the round trip's
    error (service.quality)."""
    model, infer = call.model, call.infer
    measure = model.has_decoder and call.quality.sampled()

    def finish(L_hat: IntArray, counts: IntArray) -> tuple[IntArray, IntArray, np.ndarray | None, T]:
        errors = roundtrip_nrmse(model, x, counts) if measure else None
        return L_hat, counts, errors, build(L_hat, counts)

    if rng is None:
        L_hat, counts, errors, out = await infer.run(model, "encode", x, lambda outputs: finish(*outputs))
    else:  # a seeded sample draws from its own generator: never coalesced
        L_hat, counts, errors, out = await infer.alone(model, len(x), lambda: finish(*model.encode(x, rng)))
    series = call.metrics.model(model.name)
    series.batch_size("/encode").observe(len(x))
    L0 = model.manifest.L0
    L_hat_hist, nnz_hist = series.code_L_hat(L0), series.code_nnz(L0)
    for L, nnz in zip(L_hat.tolist(), np.count_nonzero(counts, axis=1).tolist(), strict=True):
        L_hat_hist.observe(L)
        nnz_hist.observe(nnz)
    if errors is not None:
        nrmse_hist = series.roundtrip_nrmse
        for err in errors.tolist():
            nrmse_hist.observe(err)
        series.roundtrip_squared.inc(float(np.square(errors).sum()))
    series.input_bytes.inc(x.nbytes)
    return out


def _sent(call: Call, fmt: Format, sizes: list[int]) -> None:
    """The bytes of the codes sent, in total and one by one."""
    series = call.metrics.model(call.model.name)
    series.code_bytes.inc(sum(sizes))
    size_hist = series.code_size(fmt)
    for n in sizes:
        size_hist.observe(n)


async def encode_binary(request: Request, call: CallDep,
                        format: Annotated[Format, Query(description=FORMAT_DESCRIPTION)] = "v1",
                        stochastic: bool = False,
                        seed: Annotated[int | None, Query(ge=0, lt=2**63)] = None) -> Response:
    """The binary twin of /encode (docs/serving.md): float32 rows in, framed codes out."""
    model = call.model
    m = model.manifest
    x = binary.rows(await request.body(), m.D, call.settings.max_batch)
    check_format(format, m, model.name)
    rng = np.random.default_rng(seed) if stochastic else None
    if not binary.wants_binary(request.headers):
        out = await _codes(call, x, rng, lambda L, c: codes_out(L, c, m.code_space, format, m.entropy))
        _sent(call, format, [c.size_bytes for c in out])
        answer = EncodeResponse(model=model.name, fingerprint=m.fingerprint, stochastic=stochastic, codes=out)
        return Response(answer.model_dump_json(), media_type="application/json")

    def framed(_: IntArray, counts: IntArray) -> tuple[bytes, list[int]]:
        data, offsets = formats.pack_stream(format, counts, m.code_space, m.entropy)
        return binary.frame(format, data, offsets), np.diff(offsets).tolist()

    packed, sizes = await _codes(call, x, rng, framed)
    _sent(call, format, sizes)
    return Response(packed, media_type=binary.OCTET_STREAM, headers={
        "X-SDLGM-Model": model.name, binary.FINGERPRINT_HEADER: m.fingerprint, "X-SDLGM-Format": format,
        "X-SDLGM-Count": str(len(x))})


router.add_api_route("/encode", encode_binary, methods=["POST"], include_in_schema=False,
                     route_class_override=binary.OctetStreamRoute, response_model=None)


@router.post("/encode", responses=ERROR_RESPONSES, openapi_extra=BINARY_BODY)
async def encode(body: EncodeRequest, call: CallDep) -> EncodeResponse:
    """Encode one vector (`vector`) or a batch (`vectors`) with the model named by `?model=`: the
    deterministic code (the posterior's mode), or with `stochastic` a sample, reproducible with `seed`;
    `binary` in the requested `format`. An application/octet-stream body of float32 rows takes the same
    options as query parameters and, with `Accept: application/octet-stream`, answers the framed codes
    (docs/serving.md)."""
    m = call.model.manifest
    x = as_matrix(body.rows(), m.D, call.settings.max_batch)
    check_format(body.format, m, call.model.name)
    rng = np.random.default_rng(body.seed) if body.stochastic else None
    out = await _codes(call, x, rng, lambda L, c: codes_out(L, c, m.code_space, body.format, m.entropy))
    _sent(call, body.format, [c.size_bytes for c in out])
    return EncodeResponse(model=call.model.name, fingerprint=m.fingerprint, stochastic=body.stochastic, codes=out)
