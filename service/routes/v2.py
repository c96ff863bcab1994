"""The KServe V2 / Open Inference Protocol over HTTP (docs/serving.md): server and model metadata, health,
readiness and inference, each bundle served as the models of service.v2models."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response

from bundle import __version__
from service import kserve
from service.deps import ServicesDep, inference_of
from service.errors import ERROR_RESPONSES, ServiceError, bad_input
from service.fastjson import off_loop, value_cap
from service.metrics import MODEL_STATE_KEY
from service.registry import ModelRegistry
from service.routes.decode import check_codes_of
from service.v2models import V2Model, check_batch, resolve

router = APIRouter(prefix="/v2", tags=["kserve-v2"])
EXTENSIONS = ["binary_tensor_data", "model_configuration"]


def _model(name: str, version: str | None, registry: ModelRegistry, request: Request) -> V2Model:
    model = resolve(name, registry.models)
    setattr(request.state, MODEL_STATE_KEY, model.runtime.name)
    have = model.runtime.manifest.version
    if version is not None and version != have:
        raise ServiceError(404, "unknown_model", f"model {name!r} has no version {version!r}; it has {have!r}")
    return model


@router.get("")
async def server_metadata() -> dict[str, Any]:
    return {"name": "sdlgm", "version": __version__, "extensions": EXTENSIONS}


@router.get("/health/live")
async def live() -> dict[str, bool]:
    return {"live": True}


@router.get("/health/ready", responses={503: {"description": "not ready"}})
async def ready(services: ServicesDep, response: Response) -> dict[str, bool]:
    """200 when every required bundle is loaded and warm and the service is not stopping (as /readyz), else 503."""
    is_ready = not services.registry.not_ready() and not services.drain.draining
    response.status_code = 200 if is_ready else 503
    return {"ready": is_ready}


@router.get("/models/{model}", responses=ERROR_RESPONSES)
@router.get("/models/{model}/versions/{version}", responses=ERROR_RESPONSES)
async def model_metadata(model: str, services: ServicesDep, request: Request,
                         version: str | None = None) -> dict[str, Any]:
    """The model's declared tensors; platform "sdlgm", versions [the bundle's version]."""
    v2 = _model(model, version, services.registry, request)
    return {"name": v2.name, "versions": [v2.runtime.manifest.version], "platform": "sdlgm",
            "inputs": [t.metadata() for t in v2.inputs], "outputs": [t.metadata() for t in v2.outputs]}


@router.get("/models/{model}/config", responses=ERROR_RESPONSES)
@router.get("/models/{model}/versions/{version}/config", responses=ERROR_RESPONSES)
async def model_config(model: str, services: ServicesDep, request: Request,
                       version: str | None = None) -> dict[str, Any]:
    """Triton's model configuration extension, which perf_analyzer reads before it sends a request: the
    tensors without their batch dimension, max_batch_size SDLGM_MAX_BATCH, and dynamic batching on when
    SDLGM_BATCHING is (its delay SDLGM_BATCH_MAX_DELAY_MS)."""
    v2 = _model(model, version, services.registry, request)
    settings = services.settings
    config: dict[str, Any] = {"name": v2.name, "platform": "sdlgm", "backend": "sdlgm",
                              "max_batch_size": settings.max_batch,
                              "input": [t.config() for t in v2.inputs], "output": [t.config() for t in v2.outputs]}
    if settings.batching:
        config["dynamic_batching"] = {"max_queue_delay_microseconds": round(settings.batch_max_delay_ms * 1000)}
    return config


@router.get("/models/{model}/ready", responses=ERROR_RESPONSES)
@router.get("/models/{model}/versions/{version}/ready", responses=ERROR_RESPONSES)
async def model_ready(model: str, services: ServicesDep, request: Request,
                      version: str | None = None) -> dict[str, Any]:
    """200 for a served model: a bundle is served only once loaded and warmed up; 404 otherwise."""
    return {"name": _model(model, version, services.registry, request).name, "ready": True}


@router.post("/models/{model}/infer", responses=ERROR_RESPONSES)
@router.post("/models/{model}/versions/{version}/infer", responses=ERROR_RESPONSES)
async def infer(model: str, request: Request, services: ServicesDep,
                inference_header_content_length: Annotated[str | None, Header()] = None,
                version: str | None = None) -> Response:
    """Inference with JSON tensors or the binary tensor extension (Inference-Header-Content-Length)."""
    registry = services.registry
    v2 = _model(model, version, registry, request)
    sent = await request.body()
    body, raw = await off_loop(request, len(sent), kserve.parse_request, sent, inference_header_content_length,
                               value_cap(request))
    specs = {t.name: t for t in v2.inputs}
    inputs: dict[str, kserve.Array] = {}
    for inp, data in zip(body.inputs, raw, strict=True):
        if inp.name not in specs:
            raise bad_input(f"model {v2.name!r} has no input {inp.name!r}; its inputs are {', '.join(specs)}")
        if inp.name in inputs:
            raise bad_input(f"input {inp.name!r} is given twice")
        inputs[inp.name] = kserve.tensor(inp, data, specs[inp.name], v2.name)
    if v2.operation != "decode" and "x" not in inputs:
        raise bad_input(f"model {v2.name!r} needs the input 'x'")
    sizes = {len(a) for a in inputs.values()}
    if len(sizes) > 1:
        raise bad_input(f"the inputs' first dimensions differ: {sorted(sizes)}")
    check_batch(sizes.pop(), services.settings.max_batch)
    for out in body.outputs or []:
        if out.name not in v2.output_names():
            raise bad_input(f"model {v2.name!r} has no output {out.name!r}; its outputs are "
                            f"{', '.join(v2.output_names())}")
    m = v2.runtime.manifest
    if v2.operation == "decode" and body.parameters.fingerprint is not None:
        check_codes_of(v2.runtime, body.parameters.fingerprint, registry)
    parameters = {"fingerprint": m.fingerprint} if v2.operation == "encode" else {}
    rows = v2.prepare(inputs)
    return await inference_of(request, services).run(v2.runtime, v2.operation, rows,
                         lambda outputs: kserve.response(v2.name, m.version, body, v2.respond(outputs), parameters))
