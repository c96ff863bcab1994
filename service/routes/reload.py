"""POST /admin/reload: reload this worker's bundles now (docs/reload.md). An admin endpoint (service.auth):
it needs a token of SDLGM_ADMIN_TOKEN_FILE (or of SDLGM_TOKEN_FILE when no admin file is set); with
neither set the access control answers 403 on every admin path, so that an open service never lets anyone
reload it. SIGHUP does the same in every worker."""

from __future__ import annotations

from fastapi import APIRouter

from service.auth import ADMIN_PREFIX
from service.deps import ServicesDep
from service.schemas import ErrorResponse, ReloadReport

router = APIRouter(tags=["admin"])
RELOAD_PATH = ADMIN_PREFIX + "/reload"


@router.post(RELOAD_PATH, responses={403: {"model": ErrorResponse, "description": "the endpoint is off (no token "
                                           "file is set), or the token does not grant the admin endpoints"}})
async def reload(services: ServicesDep) -> ReloadReport:
    """Verify and load every new or changed bundle beside the one served and swap it in; a bundle refused
    leaves the one served in place. Answers once a reload begun after this request has finished, for the
    worker that answered (with SDLGM_WORKERS > 1, send SIGHUP to the service instead)."""
    return await services.reloader.reload(f"POST {RELOAD_PATH}")
