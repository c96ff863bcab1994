"""POST /decode: codes (sparse or binary) -> reconstructions in original units; 409 for another model's."""

from __future__ import annotations

from fastapi import APIRouter

from service.deps import MetricsDep, ModelDep, RegistryDep, SettingsDep
from service.errors import ERROR_RESPONSES, ServiceError
from service.fastjson import FastJSONRoute
from service.inference import as_counts, check_format, offload
from service.schemas import DecodeRequest, DecodeResponse

router = APIRouter(route_class=FastJSONRoute, tags=["codes"])


@router.post("/decode", responses=ERROR_RESPONSES)
async def decode(body: DecodeRequest, model: ModelDep, registry: RegistryDep, settings: SettingsDep,
                 metrics: MetricsDep) -> DecodeResponse:
    """Decode codes made by the model named by `?model=`; `fingerprint` must be that model's."""
    m = model.manifest
    if not model.has_decoder:
        raise ServiceError(422, "unsupported",
                           f"model {model.name!r} is supervised ({m.kind}) and has no decoder")
    if body.fingerprint != m.fingerprint:
        owner = registry.by_fingerprint(body.fingerprint)
        hint = f"; they are codes of model {owner!r}: use ?model={owner}" if owner else ""
        raise ServiceError(409, "fingerprint_mismatch", f"the codes were made by the model with fingerprint "
                           f"{body.fingerprint[:12]}..., not by {model.name!r} ({m.fingerprint[:12]}...){hint}")
    check_format(body.format, m)
    z = as_counts(body.codes, m.code_space, settings.max_batch, body.format, m.entropy)
    x_hat = await offload(lambda: model.decode(z), settings.request_timeout_s)
    metrics.batch_size.labels(endpoint="/decode", model=model.name).observe(len(z))
    # built without re-validation: B x D floats the model itself produced
    return DecodeResponse.model_construct(model=model.name, fingerprint=m.fingerprint,
                                          reconstructions=x_hat.tolist())
