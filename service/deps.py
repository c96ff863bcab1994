"""What a route works with, as one dependency per route: `ServicesDep` (the app's long-lived parts) for
the routes that need no model, `CallDep` (the chosen model, the registry it came from, the services and
the request's way to run inference) for those that take `?model=`.

One dependency, not one per part: FastAPI resolves each dependency of each request on its own (its
cache key, its sub-dependencies, a coroutine call), and the six of a single-vector /encode were 13 % of
its CPU (docs/serving.md, "What the profile shows"). The functions are `async def` on purpose: FastAPI
runs a plain `def` dependency in its thread pool.

The model is chosen by the `?model=` query parameter on every endpoint (the default model otherwise);
an unknown name answers 404, before the body is validated. The registry is read from the reloader on each
request, never kept: a reload swaps it in one step (service.reload), and a request finishes on the model
it chose. The chosen name is kept in the request state for the metrics' `model` label.
"""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class Services:
    """The app's parts that live as long as it does, made once by service.app.create_app."""

    settings: Settings
    metrics: Metrics
    scheduler: Scheduler
    drain: Drain
    reloader: Reloader
    quality: QualitySampler

    @property
    def registry(self) -> ModelRegistry:
        """The registry served now (a reload swaps it: read it once per request)."""
        return self.reloader.served


@dataclass(frozen=True, slots=True)
class Call:
    """One inference request's model, the registry served when it chose it, and its inference (the
    scheduler with what the ShedGuard holds for it and its deadline)."""

    model: ModelRuntime
    registry: ModelRegistry
    services: Services
    infer: Inference

    @property
    def settings(self) -> Settings:
        return self.services.settings

    @property
    def quality(self) -> QualitySampler:
        return self.services.quality

    @property
    def metrics(self) -> Metrics:
        return self.services.metrics


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services  # set by service.app.create_app
    return services


def inference_of(request: Request, services: Services) -> Inference:
    """The request's way to run inference: the scheduler, with what the ShedGuard holds for it and its
    deadline (service.deadline)."""
    state = request.scope.get("state", {})
    return Inference(services.scheduler, state.get(HOLD_STATE_KEY), state.get(DEADLINE_STATE_KEY))


async def _services(request: Request) -> Services:
    return services_of(request)


async def _call(request: Request,
                model: Annotated[str | None, Query(max_length=64, description="model name (default: the default "
                                                   "model, SDLGM_DEFAULT_MODEL)")] = None) -> Call:
    services = services_of(request)
    registry = services.registry
    runtime = registry.get(model)
    request.scope.setdefault("state", {})[MODEL_STATE_KEY] = runtime.name
    return Call(runtime, registry, services, inference_of(request, services))


ServicesDep = Annotated[Services, Depends(_services)]
CallDep = Annotated[Call, Depends(_call)]
