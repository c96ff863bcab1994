"""GET /healthz (liveness: the process answers) and GET /readyz (every required model loaded and warm, and\nnot stopping)."""

from __future__ import annotations

import os

from fastapi import APIRouter, Response

from service.deps import ServicesDep
from service.schemas import Health, Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> Health:
    return Health(status="ok", pid=os.getpid())


@router.get("/readyz", responses={503: {"model": Readiness, "description": "not ready, with reasons"}})
async def readyz(services: ServicesDep, response: Response) -> Readiness:
    """200 when the default model and every model SDLGM_MODELS lists are loaded and warmed, else 503; 503
    from the moment the service begins to stop (SIGTERM)."""
    registry = services.registry
    reasons = registry.not_ready() + (["the service is stopping"] if services.drain.draining else [])
    response.status_code = 503 if reasons else 200
    return Readiness(ready=not reasons, models=sorted(registry.models), reasons=reasons,
                     refused=registry.refused)
