"""GET /metrics: the Prometheus text exposition of this app's metrics (every worker's, with several)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from service.deps import ServicesDep

router = APIRouter(tags=["health"])


@router.get("/metrics", response_class=Response)
async def metrics(services: ServicesDep) -> Response:
    m = services.metrics
    m.ready.set(0 if services.registry.not_ready() else 1)  # readiness as /readyz answers it now
    return Response(m.exposition(), media_type=CONTENT_TYPE_LATEST)
