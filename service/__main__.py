"""`python -m service`: read the settings (SDLGM_* environment variables), fail fast on bad ones, and
serve the app with uvicorn on SDLGM_HOST:SDLGM_PORT (service.transport), in this process or, with
SDLGM_WORKERS=N > 1, in N worker processes sharing the socket (service.workers). SIGTERM drains and exits
0 (docs/serving.md); SIGHUP reloads the bundles (docs/reload.md)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from bundle.runtime import ProviderError, choose_providers
from service.app import configure_logging, create_app
from service.reload import ignore_sighup
from service.settings import Settings, describe_error
from service.transport import serve
from service.workers import serve_workers

log = logging.getLogger("sdlgm.service")


def main(argv: Sequence[str] | None = None) -> int:
    argparse.ArgumentParser(prog="python -m service", description=__doc__,
                            epilog=Settings.__doc__).parse_args(argv)
    ignore_sighup()  # a reload, not an end: the lifespan (or each worker's) reloads on it
    try:
        settings = Settings()
    except ValidationError as exc:
        sys.stderr.write(describe_error(exc) + "\n")
        return 2
    configure_logging(settings)
    if settings.provider == "cuda" and not settings.allow_cpu_fallback:
        try:
            choose_providers(settings.provider, settings.allow_cpu_fallback)
        except ProviderError as exc:
            log.critical("%s", exc)
            return 2
    if settings.workers == 1:
        return serve(settings, create_app(settings))
    serve_workers(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
