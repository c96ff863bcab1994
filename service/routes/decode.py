"""POST /decode: codes (sparse or binary) -> reconstructions in original units; 409 for another model's.
A JSON body, or framed codes as application/octet-stream (service.binary) with the fingerprint in the
X-SDLGM-Fingerprint header (or `?fingerprint=`), answered with float32 rows when Accept asks for them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import APIRouter, Header, Query, Request, Response

from bundle.formats import Format
from bundle.runtime import F32, ModelRuntime
from service import binary
from service.deps import Call, CallDep
from service.errors import ERROR_RESPONSES, ServiceError, bad_input
from service.fastjson import FastJSONRoute
from service.inference import as_counts, check_format
from service.registry import ModelRegistry
from service.schemas import FINGERPRINT, FORMAT_DESCRIPTION, DecodeRequest, DecodeResponse

T = TypeVar("T")
router = APIRouter(route_class=FastJSONRoute, tags=["codes"])
BINARY_BODY = {"requestBody": {"content": {binary.OCTET_STREAM: {"schema": {"type": "string", "format": "binary"}}}}}


def check_codes_of(model: ModelRuntime, fingerprint: str, registry: ModelRegistry) -> None:
    """422 for a model without decoder, 409 for codes made by another model (naming it when loaded)."""
    m = model.manifest
    if not model.has_decoder:
        raise ServiceError(422, "unsupported",
                           f"model {model.name!r} is supervised ({m.kind}) and has no decoder")
    if fingerprint != m.fingerprint:
        owner = registry.by_fingerprint(fingerprint)
        hint = f"; they are codes of model {owner!r}: use ?model={owner}" if owner else ""
        raise ServiceError(409, "fingerprint_mismatch", f"the codes were made by the model with fingerprint "
                           f"{fingerprint[:12]}..., not by {model.name!r} ({m.fingerprint[:12]}...){hint}")


async def _decode(call: Call, z: F32, finish: Callable[[F32], T]) -> T:
    """finish(the reconstructions of the counts z), off the event loop, coalesced with other requests'."""
    out = await call.infer.run(call.model, "decode", z, lambda outputs: finish(outputs[0]))
    call.metrics.model(call.model.name).batch_size("/decode").observe(len(z))
    return out


async def decode_binary(request: Request, call: CallDep,
                        format: Annotated[Format, Query(description=FORMAT_DESCRIPTION)] = "v1",
                        fingerprint: Annotated[str | None, Query(pattern=FINGERPRINT)] = None,
                        x_sdlgm_fingerprint: Annotated[str | None, Header(pattern=FINGERPRINT)] = None) -> Response:
    """The binary twin of /decode (docs/serving.md): framed codes in, float32 rows out."""
    given = x_sdlgm_fingerprint or fingerprint
    if given is None:
        raise bad_input(f"binary codes need the fingerprint of their model: send it in the "
                        f"{binary.FINGERPRINT_HEADER} header or the ?fingerprint= query parameter")
    model = call.model
    check_codes_of(model, given, call.registry)
    m = model.manifest
    check_format(format, m, model.name)
    blobs = binary.unframe(format, await request.body(), m.code_space, call.settings.max_batch)
    z = binary.counts_of(format, blobs, m.code_space, m.entropy)
    if binary.wants_binary(request.headers):
        rows = await _decode(call, z, lambda x_hat: x_hat.astype("<f4", copy=False).tobytes())
        return Response(rows, media_type=binary.OCTET_STREAM, headers={
            "X-SDLGM-Model": model.name, binary.FINGERPRINT_HEADER: m.fingerprint, "X-SDLGM-Count": str(len(z))})
    answer = await _decode(call, z, lambda x_hat: DecodeResponse.model_construct(
        model=model.name, fingerprint=m.fingerprint, reconstructions=x_hat.tolist()).model_dump_json())
    return Response(answer, media_type="application/json")


router.add_api_route("/decode", decode_binary, methods=["POST"], include_in_schema=False,
                     route_class_override=binary.OctetStreamRoute, response_model=None)


@router.post("/decode", responses=ERROR_RESPONSES, openapi_extra=BINARY_BODY)
async def decode(body: DecodeRequest, call: CallDep) -> DecodeResponse:
    """Decode codes made by the model named by `?model=`; `fingerprint` must be that model's. Framed binary
    codes as application/octet-stream take the fingerprint in the X-SDLGM-Fingerprint header and answer
    float32 rows with `Accept: application/octet-stream` (docs/serving.md)."""
    model = call.model
    check_codes_of(model, body.fingerprint, call.registry)
    m = model.manifest
    check_format(body.format, m, model.name)
    z = as_counts(body.codes, m.code_space, call.settings.max_batch, body.format, m.entropy)
    # built without re-validation: B x D floats the model itself produced
    return await _decode(call, z, lambda x_hat: DecodeResponse.model_construct(
        model=model.name, fingerprint=m.fingerprint, reconstructions=x_hat.tolist()))
