"""POST /encode: raw vectors -> sparse codes (indices, counts, L_hat, binary form)."""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter

from service.deps import MetricsDep, ModelDep, QualityDep, SettingsDep
from service.errors import ERROR_RESPONSES
from service.fastjson import FastJSONRoute
from service.inference import as_matrix, check_format, codes_out, offload
from service.quality import roundtrip_nrmse
from service.schemas import CodeOut, EncodeRequest, EncodeResponse

router = APIRouter(route_class=FastJSONRoute, tags=["codes"])


@router.post("/encode", responses=ERROR_RESPONSES)
async def encode(body: EncodeRequest, model: ModelDep, settings: SettingsDep, metrics: MetricsDep,
                 quality: QualityDep) -> EncodeResponse:
    """Encode one vector (`vector`) or a batch (`vectors`) with the model named by `?model=`: the
    deterministic code (the posterior's mode), or with `stochastic` a sample, reproducible with `seed`;
    `binary` in the requested `format`."""
    m = model.manifest
    x = as_matrix(body.rows(), m.D, settings.max_batch)
    check_format(body.format, m)
    rng = np.random.default_rng(body.seed) if body.stochastic else None

    measure = model.has_decoder and quality.sampled()

    def run() -> tuple[list[CodeOut], np.ndarray | None]:
        L_hat, counts = model.encode(x, rng)
        errors = roundtrip_nrmse(model, x, counts) if measure else None
        return codes_out(L_hat, counts, m.code_space, body.format, m.entropy), errors

    out, errors = await offload(run, settings.request_timeout_s)
    metrics.batch_size.labels(endpoint="/encode", model=model.name).observe(len(out))
    L_hat_hist, nnz_hist = metrics.code_L_hat.labels(model=model.name), metrics.code_nnz.labels(model=model.name)
    size_hist = metrics.code_size.labels(model=model.name, format=body.format)
    for c in out:
        L_hat_hist.observe(c.L_hat)
        nnz_hist.observe(c.nnz)
        size_hist.observe(c.size_bytes)
    if errors is not None:
        nrmse_hist = metrics.roundtrip_nrmse.labels(model=model.name)
        for err in errors.tolist():
            nrmse_hist.observe(err)
    metrics.input_bytes.labels(model=model.name).inc(x.nbytes)
    metrics.code_bytes.labels(model=model.name).inc(sum(c.size_bytes for c in out))
    return EncodeResponse(model=model.name, fingerprint=m.fingerprint, stochastic=body.stochastic, codes=out)
