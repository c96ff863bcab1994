"""Hot reload (docs/reload.md): the bundles loaded again without a restart, on SIGHUP or POST /admin/reload.

`Reloader` owns the registry the app serves (`app.state.registry`). Each pass (service.registry.
load_registry) runs in a worker thread while requests go on: it verifies and loads each new or changed
bundle beside the one served, keeps the one served when the new one is refused for any reason, and gives
a new registry, which is swapped in on the event loop in one step. A request that chose a model before the
swap finishes on it; the replaced runtime's batchers answer what they hold and end (Scheduler.retire), and
it is freed with its last request. Reloads run one at a time; requests for one during a pass are served by
one more pass after it (the only task that runs passes is `_serve`). The metrics follow each swap (Metrics.model_loaded, model_unloaded,
bundle_refused, and the counters sdlgm_model_loads_total and sdlgm_reloads_total).

SIGHUP asks for a reload while the app's lifespan runs in the main thread (a real server; with several
workers the launcher passes it on to each, service.workers); before and after that SIGHUP is ignored, never
fatal. The first pass, at start, is the same code with nothing served yet.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import anyio
from starlette.datastructures import State

from bundle.runtime import RunObserver
from service.batching import Scheduler
from service.metrics import Metrics
from service.registry import Loading, ModelRegistry, describe, load_registry
from service.schemas import ReloadReport
from service.settings import Settings

log = logging.getLogger("sdlgm.service")
SIGHUP = "SIGHUP"


def ignore_sighup() -> None:
    """SIGHUP does nothing (until a lifespan asks for reloads): its default would end the process."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGHUP, signal.SIG_IGN)


class Reloader:
    """The served registry, its first load and every reload after it."""

    def __init__(self, settings: Settings, metrics: Metrics, scheduler: Scheduler, observe: RunObserver,
                 state: State) -> None:
        self.settings, self.metrics, self.scheduler, self.observe, self.state = (settings, metrics, scheduler,
                                                                                 observe, state)
        self._asked = 0  # reloads asked for
        self._covered = 0  # of them, those the last finished pass began after
        self._triggers: set[str] = set()

    @property
    def served(self) -> ModelRegistry:
        """The registry served now: each swap replaces it whole, so a request reads it once and keeps it."""
        registry: ModelRegistry = self.state.registry
        return registry

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[None]:
        """Load the bundles (ProviderError propagates: the service does not start), then reload on request
        until the context ends (the app's lifespan)."""
        self._wanted, self._finished = anyio.Event(), anyio.Event()
        with self._on_sighup():
            loading = await anyio.to_thread.run_sync(load_registry, self.settings, self.observe)
            self._last = self._swap(loading, None)
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self._serve, name="reloader")
                try:
                    yield
                finally:
                    tasks.cancel_scope.cancel()

    @contextmanager
    def _on_sighup(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield  # an app run in a thread (a TestClient): no signals; POST /admin/reload still works
            return
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self.request, SIGHUP)
        try:
            yield
        finally:
            loop.remove_signal_handler(signal.SIGHUP)
            ignore_sighup()

    def request(self, trigger: str) -> int:
        """Ask for a reload (on the event loop); the number of this request."""
        self._asked += 1
        self._triggers.add(trigger)
        self._wanted.set()
        return self._asked

    async def reload(self, trigger: str) -> ReloadReport:
        """Ask for a reload and wait for a pass begun after the asking; its report."""
        ticket = self.request(trigger)
        while self._covered < ticket:
            await self._finished.wait()
        return self._last

    async def _serve(self) -> None:
        while True:
            await self._wanted.wait()
            self._wanted = anyio.Event()
            covers, triggers = self._asked, ", ".join(sorted(self._triggers))
            self._triggers.clear()
            try:
                self._last = await self._pass(triggers)
            except Exception as exc:  # a bug of the swap: the reloader and the process go on
                log.exception("reload (%s) failed", triggers)
                self._last = ReloadReport(pid=os.getpid(), loaded={}, unchanged=[], refused={}, error=describe(exc))
            self._covered = covers
            self._finished.set()
            self._finished = anyio.Event()

    async def _pass(self, trigger: str) -> ReloadReport:
        """One reload: never raises, whatever the bundles hold; the old registry stays when it fails."""
        served: ModelRegistry = self.state.registry
        try:
            loading = await anyio.to_thread.run_sync(load_registry, self.settings, self.observe, served,
                                                     abandon_on_cancel=True)
        except Exception as exc:  # not a bundle's: choose_providers, or a bug; nothing is swapped
            log.exception("reload (%s) failed, every model is kept as served", trigger)
            loading = Loading(served, error=describe(exc))
        return self._swap(loading, trigger)

    def _swap(self, loading: Loading, trigger: str | None) -> ReloadReport:
        """Serve the pass's registry, in one step on the event loop, and bring the metrics along."""
        registry, metrics = loading.registry, self.metrics
        before: ModelRegistry | None = getattr(self.state, "registry", None)
        for old in loading.replaced.values():
            metrics.model_unloaded(old)
        for runtime in loading.loaded.values():
            metrics.model_loaded(runtime)
        self.state.registry = registry
        for old in loading.replaced.values():
            self.scheduler.retire(old)
        if loading.error is None:
            for name in sorted({*registry.refused, *(before.refused if before else {})}):
                metrics.bundle_refused(name, name in registry.refused)
            for name in loading.loaded:
                metrics.model_loads.labels(**metrics.of(name), result="loaded").inc()
            for name in registry.refused:
                metrics.model_loads.labels(**metrics.of(name), result="refused").inc()
        metrics.ready.set(0 if registry.not_ready() else 1)
        if trigger is not None:
            metrics.reloads.labels(result="failed" if loading.error else "done").inc()
            log.info("reload (%s): %d loaded, %d unchanged, %d refused%s", trigger, len(loading.loaded),
                     len(loading.unchanged), len(registry.refused), f"; failed: {loading.error}" if loading.error
                     else "")
        for reason in registry.not_ready():
            log.warning("not ready: %s", reason)
        return ReloadReport(pid=os.getpid(), loaded={n: r.manifest.fingerprint for n, r in loading.loaded.items()},
                            unchanged=loading.unchanged, refused=registry.refused, error=loading.error)
