"""POST /v1/reload: reload this worker's bundles now (docs/reload.md), with the bearer token of
SDLGM_RELOAD_TOKEN; off (403) when it is unset. SIGHUP does the same in every worker."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Header

from service.deps import ReloaderDep, SettingsDep
from service.errors import ServiceError
from service.schemas import ErrorResponse, ReloadReport

router = APIRouter(tags=["admin"])
BEARER = "Bearer "


@router.post("/v1/reload", responses={403: {"model": ErrorResponse, "description": "the endpoint is off, or the "
                                            "token is missing or wrong"}})
async def reload(reloader: ReloaderDep, settings: SettingsDep,
                 authorization: Annotated[str | None, Header()] = None) -> ReloadReport:
    """Verify and load every new or changed bundle beside the one served and swap it in; a bundle refused
    leaves the one served in place. Answers once a reload begun after this request has finished, for the
    worker that answered (with SDLGM_WORKERS > 1, send SIGHUP to the service instead)."""
    token = settings.reload_token
    if token is None:
        raise ServiceError(403, "forbidden", "POST /v1/reload is off: set SDLGM_RELOAD_TOKEN to turn it on, or "
                           "send SIGHUP to the service")
    given = authorization[len(BEARER):] if authorization and authorization.startswith(BEARER) else ""
    if not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
        raise ServiceError(403, "forbidden", "POST /v1/reload needs the header 'Authorization: Bearer <token>' "
                           "with the token of SDLGM_RELOAD_TOKEN")
    return await reloader.reload("POST /v1/reload")
