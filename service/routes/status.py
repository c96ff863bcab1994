"""The built-in status page for nodes without Grafana: GET / (static HTML and JS under service/static/, no
CDN, no build step) and GET /v1/status, the figures it shows (service.status), refreshed by the page."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from service.deps import ServicesDep
from service.errors import ServiceError
from service.status import Status, status_of

router = APIRouter(tags=["status"])
STATIC = Path(__file__).resolve().parents[1] / "static"
ASSETS = {"status.js": "text/javascript", "status.css": "text/css"}


@router.get("/", include_in_schema=False)
async def page() -> FileResponse:
    return FileResponse(STATIC / "status.html", media_type="text/html")


@router.get("/static/{name}", include_in_schema=False)
async def asset(name: str) -> FileResponse:
    if name not in ASSETS:
        raise ServiceError(404, "not_found", f"no static file {name!r}; there are {', '.join(sorted(ASSETS))}")
    return FileResponse(STATIC / name, media_type=ASSETS[name])


@router.get("/v1/status")
async def status(services: ServicesDep) -> Status:
    """The status page's figures from this service's metrics: models, requests and latency per endpoint,
    code sizes, the sampled round-trip error beside the bundle's own figure."""
    metrics = services.metrics
    ready = not services.registry.not_ready()
    metrics.ready.set(1 if ready else 0)
    return status_of(metrics.collectors(), ready)
