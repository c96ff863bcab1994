"""Several worker processes (SDLGM_WORKERS > 1): uvicorn's workers on one listening socket, each serving
`service.app:worker_app` over the service's connections (service.transport), with their Prometheus
metrics merged through a fresh directory.

The launcher makes the directory, sets PROMETHEUS_MULTIPROC_DIR to it before any worker starts (each
worker imports prometheus_client with it set, so its values go to files there: service.metrics) and
removes it when uvicorn returns. On SIGTERM the launcher stops each worker with SIGTERM, and each drains
as a single process does.
"""

from __future__ import annotations

import logging
import os
import tempfile

from uvicorn.supervisors import Multiprocess

from service.metrics import MULTIPROC_ENV
from service.settings import Settings
from service.transport import config_of

log = logging.getLogger("sdlgm.service")


def serve_workers(settings: Settings) -> None:
    """Serve SDLGM_WORKERS worker processes until uvicorn stops them (SIGINT, SIGTERM)."""
    with tempfile.TemporaryDirectory(prefix="sdlgm-metrics-") as metrics_dir:
        os.environ[MULTIPROC_ENV] = metrics_dir
        log.info("%d worker processes, metrics merged in %s", settings.workers, metrics_dir)
        config = config_of(settings, "service.app:worker_app", factory=True, workers=settings.workers)
        Multiprocess(config, sockets=[config.bind_socket()]).run()
