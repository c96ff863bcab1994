"""The FastAPI app: `create_app(settings)` assembles routes, middlewares and error handlers, and loads
the models, reloads them on request (service.reload) and starts the batchers (service.batching) in its
lifespan (not at import), whose state hands the drain (service.drain) to the HTTP connections
(service.transport); `worker_app` is what each worker process serves when there are several
(service.workers). Docs at /docs (Swagger UI)
and /redoc are served from files installed with fastapi-offline, so they work on a node that cannot
reach a CDN.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from starlette.middleware.cors import CORSMiddleware

from bundle import __version__
from service.admission import DOOR_STATE_KEY, Capacity, Door, ShedGuard
from service.auth import AccessControl, TokenFile
from service.batching import Scheduler
from service.deadline import RequestDeadline
from service.deps import Services
from service.drain import DRAIN_STATE_KEY, Drain
from service.errors import install_error_handlers
from service.fastjson import Parser
from service.metrics import Metrics
from service.middleware import MetricsMiddleware, RequestGuard
from service.openapi import install_openapi
from service.probe import ProbePort
from service.quality import QualitySampler
from service.reload import Reloader, ignore_sighup
from service.routes import ROUTERS
from service.settings import Settings

DESCRIPTION = """Sparse discrete codes (SDLGM) served with onnxruntime.

Every endpoint takes the model as the `?model=` query parameter (default: SDLGM_DEFAULT_MODEL).
Errors answer `{"error": "...", "kind": "..."}` with a 4xx status for bad input.
With SDLGM_TOKEN_FILE set, every endpoint but the probes, the docs and (unless SDLGM_AUTH_METRICS) the
metrics needs `Authorization: Bearer <token>`: 401 without a valid one."""
CORS_HEADERS = ["Authorization", "Content-Type", "Accept", "X-SDLGM-Fingerprint", "Inference-Header-Content-Length"]
CORS_EXPOSED = ["X-SDLGM-Model", "X-SDLGM-Fingerprint", "X-SDLGM-Format", "X-SDLGM-Count", "Retry-After",
                "WWW-Authenticate"]


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app for these settings (read from SDLGM_* environment variables when None)."""
    settings = settings or Settings()
    metrics = Metrics()
    capacity = Capacity(settings.queue_max_vectors, metrics)
    scheduler = Scheduler(settings, metrics, capacity)
    drain = Drain(settings.drain_timeout_s)
    api_tokens = TokenFile(settings.token_file) if settings.token_file else None
    admin_tokens = TokenFile(settings.admin_token_file) if settings.admin_token_file else None

    def observe(model: str, graph: str, seconds: float) -> None:
        metrics.model(model).inference(graph).observe(seconds)

    door: list[Door] = []  # made once the routes are known; none when a token or CORS must see every request

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, object]]:
        app.state.parser = Parser()
        try:
            async with AsyncExitStack() as stack:
                if settings.probe_port is not None:  # first: a liveness probe is answered while models load
                    app.state.probe = ProbePort(settings.host, settings.probe_port, settings.probe_stall_s)
                    await stack.enter_async_context(app.state.probe.serving())
                await stack.enter_async_context(reloader.serving())  # the models loaded, then reloads
                await stack.enter_async_context(scheduler.running())
                # the lifespan state: how each connection finds the drain and the door (service.transport)
                yield {DRAIN_STATE_KEY: drain, **({DOOR_STATE_KEY: door[0]} if door else {})}
        finally:
            metrics.process_exits()

    app = FastAPIOffline(title="SDLGM service", version=__version__, description=DESCRIPTION, lifespan=lifespan,
                         swagger_ui_parameters={"validatorUrl": None})
    reloader = Reloader(settings, metrics, scheduler, observe, app.state)
    # What the routes take (service.deps), made once; the registry is the reloader's (app.state.registry).
    app.state.services = Services(settings, metrics, scheduler, drain, reloader,
                                  QualitySampler(settings.quality_sample_rate))
    app.state.settings, app.state.metrics = settings, metrics
    for router in ROUTERS:
        app.include_router(router)
    install_error_handlers(app, metrics)
    install_openapi(app, settings)
    # Route templates for the metrics and the guard: the app's own routes and, flat, those of the included routers.
    routes = [r for r in app.routes if hasattr(r, "path")] + [r for router in ROUTERS for r in router.routes]
    if api_tokens is None and not settings.cors_origin_list:  # the shed 503 and /healthz from the head (service.admission)
        door.append(Door(app.state, metrics, capacity, settings.max_batch, settings.max_body_bytes, routes))
    app.add_middleware(RequestGuard, metrics=metrics, max_body_bytes=settings.max_body_bytes, routes=routes)
    # Before the body is read: a request whose vectors do not fit its model's queue is shed here.
    app.add_middleware(ShedGuard, metrics=metrics, capacity=capacity, max_batch=settings.max_batch,
                       max_body_bytes=settings.max_body_bytes)
    # Before the body is read or a queue slot taken: the token (service.auth); without token files, admin paths off.
    app.add_middleware(AccessControl, metrics=metrics, api=api_tokens, admin=admin_tokens,
                       protect_metrics=settings.auth_metrics, max_body_bytes=settings.max_body_bytes)
    # Around all of a request's work: its body's, its own and the drain's deadlines.
    app.add_middleware(RequestDeadline, metrics=metrics, drain=drain, request_timeout_s=settings.request_timeout_s,
                       body_timeout_s=settings.body_timeout_s)
    if settings.cors_origin_list:  # outside the access control: a browser's preflight carries no token
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origin_list, allow_methods=["GET", "POST"],
                           allow_headers=CORS_HEADERS, expose_headers=CORS_EXPOSED, max_age=600)
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=routes)  # outermost: sees every answer
    return app


def worker_app() -> FastAPI:
    """The app of one worker process of `python -m service` with SDLGM_WORKERS > 1 (uvicorn imports it by
    name in each worker): the settings from the environment, and the service's log lines set up there."""
    ignore_sighup()  # until the lifespan reloads on it
    settings = Settings()
    configure_logging(settings)
    return create_app(settings)


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
