"""Several worker processes (SDLGM_WORKERS > 1): uvicorn's workers on one listening socket, each serving
`service.app:worker_app` over the service's connections (service.transport), with their Prometheus
metrics merged through a fresh directory.

The launcher makes the directory, sets PROMETHEUS_MULTIPROC_DIR to it before any worker starts (each
worker imports prometheus_client with it set, so its values go to files there: service.metrics) and
removes it when uvicorn returns. On SIGTERM the launcher stops each worker with SIGTERM, and each drains
as a single process does. On SIGHUP it restarts nothing (uvicorn's own SIGHUP replaces every worker): it
passes SIGHUP on to each worker, which reloads its bundles (service.reload). A worker still starting
gets it once it has started (its lifespan then handles SIGHUP), so each worker alive at the SIGHUP reloads
after it; a worker started later loads the bundles as they are then.
"""

from __future__ import annotations

import logging
import os
import signal
import tempfile
from socket import socket

from uvicorn import Config
from uvicorn.supervisors import Multiprocess

from service.metrics import MULTIPROC_ENV
from service.settings import Settings
from service.transport import config_of

log = logging.getLogger("sdlgm.service")
READY_PING_S = 1.0  # how long the launcher waits for a starting worker's answer before trying again


class Workers(Multiprocess):
    """uvicorn's supervisor, for which SIGHUP is a reload in every worker rather than their restart."""

    def __init__(self, config: Config, sockets: list[socket]) -> None:
        super().__init__(config, sockets)
        self.owed: set[int] = set()  # workers owed a SIGHUP, by pid

    def handle_hup(self) -> None:
        log.info("SIGHUP: every worker reloads its bundles")
        self.owed = {p.pid for p in self.processes if p.pid is not None}
        self._pass_on()

    def keep_subprocess_alive(self) -> None:
        super().keep_subprocess_alive()
        self._pass_on()

    def _pass_on(self) -> None:
        """SIGHUP to each worker owed one that has started (its lifespan handles SIGHUP from its start)."""
        for process in self.processes:
            if process.pid in self.owed and process.is_ready(timeout=READY_PING_S):
                os.kill(process.pid, signal.SIGHUP)
                self.owed.discard(process.pid)
        self.owed &= {p.pid for p in self.processes if p.pid is not None}  # a worker gone since is owed nothing


def serve_workers(settings: Settings) -> None:
    """Serve SDLGM_WORKERS worker processes until uvicorn stops them (SIGINT, SIGTERM); SIGHUP reloads."""
    with tempfile.TemporaryDirectory(prefix="sdlgm-metrics-") as metrics_dir:
        os.environ[MULTIPROC_ENV] = metrics_dir
        log.info("%d worker processes, metrics merged in %s", settings.workers, metrics_dir)
        config = config_of(settings, "service.app:worker_app", factory=True, workers=settings.workers)
        Workers(config, sockets=[config.bind_socket()]).run()
