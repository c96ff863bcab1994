"""Request dependencies as `Annotated` types: the settings, the metrics, the registry, its reloader, the
drain, the chosen model,
and the request's way to run inference (service.batching, with what service.admission holds for it and
its deadline from service.deadline).

The functions are `async def` on purpose: FastAPI runs a plain `def` dependency in its thread pool, a
thread hop per dependency per request for what is an attribute lookup.

The model is chosen by the `?model=` query parameter on every endpoint (the default model otherwise);
an unknown name answers 404. The chosen name is kept in the request state for the metrics' `model` label.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from bundle.runtime import ModelRuntime
from service.admission import HOLD_STATE_KEY
from service.batching import Inference, Scheduler
from service.deadline import DEADLINE_STATE_KEY
from service.drain import Drain
from service.metrics import MODEL_STATE_KEY, Metrics
from service.quality import QualitySampler
from service.registry import ModelRegistry
from service.reload import Reloader
from service.settings import Settings


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


async def _registry(request: Request) -> ModelRegistry:
    registry: ModelRegistry = request.app.state.registry
    return registry


async def _quality(request: Request) -> QualitySampler:
    quality: QualitySampler = request.app.state.quality
    return quality


async def _reloader(request: Request) -> Reloader:
    reloader: Reloader = request.app.state.reloader
    return reloader


async def _drain(request: Request) -> Drain:
    drain: Drain = request.app.state.drain
    return drain


SettingsDep = Annotated[Settings, Depends(_settings)]
DrainDep = Annotated[Drain, Depends(_drain)]
QualityDep = Annotated[QualitySampler, Depends(_quality)]
MetricsDep = Annotated[Metrics, Depends(_metrics)]
RegistryDep = Annotated[ModelRegistry, Depends(_registry)]
ReloaderDep = Annotated[Reloader, Depends(_reloader)]


async def _model(request: Request, registry: RegistryDep,
           model: Annotated[str | None, Query(max_length=64, description="model name (default: the default "
                                              "model, SDLGM_DEFAULT_MODEL)")] = None) -> ModelRuntime:
    runtime = registry.get(model)
    setattr(request.state, MODEL_STATE_KEY, runtime.name)
    return runtime


ModelDep = Annotated[ModelRuntime, Depends(_model)]


async def _inference(request: Request) -> Inference:
    scheduler: Scheduler = request.app.state.scheduler
    state = request.scope.get("state", {})
    return Inference(scheduler, state.get(HOLD_STATE_KEY), state.get(DEADLINE_STATE_KEY))


InferenceDep = Annotated[Inference, Depends(_inference)]
