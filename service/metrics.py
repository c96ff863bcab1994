"""Prometheus metrics, one CollectorRegistry per app (so tests can build several apps in one process), or,
under several worker processes (SDLGM_WORKERS > 1: the launcher sets PROMETHEUS_MULTIPROC_DIR before any
worker imports prometheus_client), prometheus_client's multiprocess mode: each worker writes its values
to files in that directory and /metrics sums every worker's (gauges by their `multiprocess_mode`).

Names follow Prometheus conventions (base units, `_total`, `_seconds`, `_bytes`); no `_created` series.
Label values are bounded: `endpoint` is a route template ("other" for unknown paths). Every metric of a
model carries the same two labels, `model` (a loaded model's name, "" when the request named none that
is loaded) and `version` (that bundle's version, "" likewise), so any two join `on (model, version)`.
Compression ratio = sdlgm_input_bytes_total / sdlgm_code_bytes_total (raw float32 bytes of the encoded
vectors against the binary codes' bytes). L_hat and nnz are counts from 0 to the model's L0, so their
histograms have one bucket per integer: le="0.0", "1.0", ..., "L0" (and "+Inf"), per model.

Process metrics (`process_cpu_seconds_total`, `process_resident_memory_bytes`, ...) are prometheus_client's
ProcessCollector: of this process with one worker; with several, every live worker's, read from /proc by
the worker that answers the scrape and labelled `pid` (the values of one process cannot be summed from
files as the others are, and a sum would hide the worker that grows).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar, cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics import disable_created_metrics
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from bundle.runtime import ModelRuntime
from service.quality import reference_nrmse

disable_created_metrics()

T = TypeVar("T")
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
MODEL_STATE_KEY = "sdlgm_model"  # the request state's model name: the `model` label of request metrics
MODEL_LABELS = ["model", "version"]

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
INFERENCE_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
BATCH_BUCKETS = tuple(float(2**i) for i in range(17))  # 1 .. 65536, the range of max_batch
REQUESTS_BUCKETS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0)
CODE_SIZE_BUCKETS = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 16.0, 24.0, 32.0, 64.0, 128.0, 256.0, 1024.0)
NRMSE_BUCKETS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.8, 1.0, 1.5, 2.0, 5.0)


class IntegerHistogram(Collector):
    """A histogram family of counts from 0 to a per-series top (a model's L0): each series has the buckets
    le = 0, 1, ..., top. prometheus_client gives one bucket list to a whole family, so this keeps one
    unregistered Histogram per top and exports them as one family (in multiprocess mode their files merge
    by name and labels the same way)."""

    def __init__(self, name: str, documentation: str, labelnames: list[str], registry: CollectorRegistry) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, labelnames
        self._by_top: dict[int, Histogram] = {}
        self._lock = threading.Lock()
        registry.register(self)

    def labels(self, top: int, **labels: str) -> Histogram:
        """The series of these labels, whose values lie in 0..top."""
        with self._lock:
            family = self._by_top.get(top)
            if family is None:
                family = self._by_top[top] = Histogram(self.name, self.documentation, self.labelnames,
                                                       buckets=[float(i) for i in range(top + 1)], registry=None)
        return family.labels(**labels)

    def describe(self) -> Iterable[Metric]:
        return [Metric(self.name, self.documentation, "histogram")]

    def collect(self) -> Iterable[Metric]:
        merged = Metric(self.name, self.documentation, "histogram")
        with self._lock:
            families = list(self._by_top.values())
        for family in families:
            for metric in family.collect():
                merged.samples.extend(metric.samples)
        return [merged]


class WorkerProcesses(Collector):
    """ProcessCollector's metrics of every live worker of a multiprocess directory, labelled `pid`. A
    worker is live while its `live*` gauge files are there (service.metrics.Metrics.process_exits removes
    them) and /proc has its pid."""

    def __init__(self, directory: str, proc: str = "/proc") -> None:
        self.directory, self.proc = Path(directory), proc

    def pids(self) -> list[int]:
        found = {int(p.stem.rsplit("_", 1)[1]) for p in self.directory.glob("gauge_live*_*.db")}
        return sorted(pid for pid in found | {os.getpid()} if os.path.exists(os.path.join(self.proc, str(pid))))

    def collect(self) -> Iterable[Metric]:
        families: dict[str, Metric] = {}
        for pid in self.pids():
            for metric in ProcessCollector(pid=_constant(pid), proc=self.proc, registry=None).collect():
                out = families.setdefault(metric.name, Metric(metric.name, metric.documentation, metric.type))
                out.samples.extend(s._replace(labels={**s.labels, "pid": str(pid)}) for s in metric.samples)
        return list(families.values())


def _constant(pid: int) -> Callable[[], int]:
    return lambda: pid


class ModelSeries:
    """The series of one model at one version, each child looked up once: prometheus_client's `labels()`
    checks the label names and takes a lock on every call, which per request and metric was 4 % of a
    single-vector /encode's CPU (docs/serving.md). A child is made on first use, as `labels()` makes it, so
    a series still appears only once something is counted in it. `Metrics.model` makes a new one when the
    model's version changes (a reload), so every series carries the version served when it is counted."""

    def __init__(self, metrics: Metrics, model: str, version: str) -> None:
        self.version = version
        self.labels = {"model": model, "version": version}
        self._metrics = metrics
        self._children: dict[tuple[str, ...], Any] = {}

    def _child(self, key: tuple[str, ...], make: Callable[[], T]) -> T:
        child = self._children.get(key)
        if child is None:  # two threads may both make it: labels() gives them the same child
            child = self._children[key] = make()
        return cast(T, child)

    def request(self, endpoint: str, status: str) -> tuple[Counter, Histogram]:
        """sdlgm_requests_total and sdlgm_request_duration_seconds of an endpoint and status."""
        key = ("request", endpoint, status)
        pair = self._children.get(key)
        if pair is None:
            m, labels = self._metrics, {"endpoint": endpoint, **self.labels, "status": status}
            pair = self._children[key] = (m.requests.labels(**labels), m.request_duration.labels(**labels))
        return cast(tuple[Counter, Histogram], pair)

    def batch_size(self, endpoint: str) -> Histogram:
        return self._child(("batch_size", endpoint),
                           lambda: self._metrics.batch_size.labels(endpoint=endpoint, **self.labels))

    def inference(self, graph: str) -> Histogram:
        return self._child(("inference", graph), lambda: self._metrics.inference.labels(**self.labels, graph=graph))

    def code_size(self, fmt: str) -> Histogram:
        return self._child(("code_size", fmt), lambda: self._metrics.code_size.labels(**self.labels, format=fmt))

    def code_L_hat(self, L0: int) -> Histogram:
        return self._child(("code_L_hat", str(L0)), lambda: self._metrics.code_L_hat.labels(L0, **self.labels))

    def code_nnz(self, L0: int) -> Histogram:
        return self._child(("code_nnz", str(L0)), lambda: self._metrics.code_nnz.labels(L0, **self.labels))

    def coalesced(self, operation: str) -> tuple[Histogram, Histogram]:
        """sdlgm_coalesced_requests and sdlgm_coalesced_batch_size of an operation."""
        m = self._metrics
        return self._child(("coalesced", operation), lambda: (
            m.coalesced_requests.labels(**self.labels, operation=operation),
            m.coalesced_batch_size.labels(**self.labels, operation=operation)))

    def _plain(self, name: str) -> Any:
        return self._child((name,), lambda: getattr(self._metrics, name).labels(**self.labels))

    @property
    def input_bytes(self) -> Counter:
        return cast(Counter, self._plain("input_bytes"))

    @property
    def code_bytes(self) -> Counter:
        return cast(Counter, self._plain("code_bytes"))

    @property
    def roundtrip_nrmse(self) -> Histogram:
        return cast(Histogram, self._plain("roundtrip_nrmse"))

    @property
    def roundtrip_squared(self) -> Counter:
        return cast(Counter, self._plain("roundtrip_squared"))

    @property
    def queue_vectors(self) -> Gauge:
        return cast(Gauge, self._plain("queue_vectors"))

    @property
    def shed(self) -> Counter:
        return cast(Counter, self._plain("shed"))


class Metrics:
    """Every metric family the service exports, registered in its own registry; `model(name)` gives a
    model's series."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self._versions: dict[str, str] = {}
        m = MODEL_LABELS
        self.requests = Counter("sdlgm_requests", "HTTP requests answered", ["endpoint", *m, "status"], registry=r)
        self.request_duration = Histogram("sdlgm_request_duration_seconds", "HTTP request latency",
                                          ["endpoint", *m, "status"], buckets=LATENCY_BUCKETS, registry=r)
        self.inference = Histogram("sdlgm_inference_seconds", "onnxruntime time per graph run", [*m, "graph"],
                                   buckets=INFERENCE_BUCKETS, registry=r)
        self.batch_size = Histogram("sdlgm_batch_size", "vectors or codes per request", ["endpoint", *m],
                                    buckets=BATCH_BUCKETS, registry=r)
        self.code_L_hat = IntegerHistogram("sdlgm_code_L_hat", "L_hat (active slots) of each code sent, 0..L0", m,
                                           registry=r)
        self.code_nnz = IntegerHistogram("sdlgm_code_nnz", "non-zero entries of each code sent, 0..L0", m,
                                         registry=r)
        self.input_bytes = Counter("sdlgm_input_bytes", "raw float32 bytes of the vectors encoded", m, registry=r)
        self.code_bytes = Counter("sdlgm_code_bytes", "binary code bytes sent for them", m, registry=r)
        self.code_size = Histogram("sdlgm_code_size_bytes", "bytes of each code sent, in its wire format",
                                   [*m, "format"], buckets=CODE_SIZE_BUCKETS, registry=r)
        self.roundtrip_nrmse = Histogram(
            "sdlgm_roundtrip_nrmse", "normalized RMSE of decode(encode(x)) against x, per vector of the sampled "
            "/encode requests (SDLGM_QUALITY_SAMPLE_RATE)", m, buckets=NRMSE_BUCKETS, registry=r)
        self.roundtrip_squared = Counter(
            "sdlgm_roundtrip_squared_nrmse", "sum of the squared NRMSE of the same vectors: sqrt(this / "
            "sdlgm_roundtrip_nrmse_count) is the NRMSE of the traffic as the bundle's evaluation defines it", m,
            registry=r)
        self.reference_nrmse = Gauge(
            "sdlgm_model_reference_nrmse", "NRMSE of the bundle's own evaluation (manifest.json): what "
            "sdlgm_roundtrip_* are compared with", m, registry=r, multiprocess_mode="livemax")
        self.errors = Counter("sdlgm_errors", "error responses by kind", ["kind"], registry=r)
        self.in_flight = Gauge("sdlgm_in_flight_requests", "HTTP requests being answered", registry=r,
                               multiprocess_mode="livesum")
        self.ready = Gauge("sdlgm_ready", "1 when every required model is loaded and warm (GET /readyz answers "
                           "200), else 0; with several workers the least ready one", registry=r,
                           multiprocess_mode="livemin")
        self.model_info = Gauge("sdlgm_model_info", "1 for each loaded model", [*m, "fingerprint", "provider"],
                                registry=r, multiprocess_mode="livemax")
        self.queue_vectors = Gauge("sdlgm_queue_vectors", "vectors or codes admitted and not yet answered, queued or "
                                   "running (each worker caps its own at SDLGM_QUEUE_MAX_VECTORS)", m,
                                   registry=r, multiprocess_mode="livesum")
        self.shed = Counter("sdlgm_shed_requests", "requests answered 503 overloaded: their vectors did not fit "
                            "the model's queue", m, registry=r)
        self.coalesced_batch_size = Histogram(
            "sdlgm_coalesced_batch_size", "vectors or codes per onnxruntime batch of coalesced requests "
            "(dynamic batching)", [*m, "operation"], buckets=BATCH_BUCKETS, registry=r)
        self.coalesced_requests = Histogram(
            "sdlgm_coalesced_requests", "requests per coalesced batch (dynamic batching)", [*m, "operation"],
            buckets=REQUESTS_BUCKETS, registry=r)
        self.model_refused = Gauge(
            "sdlgm_model_refused", "1 while the bundle on disk under this name is refused (at start or by the "
            "last reload; the version labelled is the one still served, \"\" for none), else 0", m, registry=r,
            multiprocess_mode="livemax")
        self.model_loads = Counter("sdlgm_model_loads", "bundles loaded (result loaded) or refused (result refused), "
                                   "at start and by each reload; an unchanged bundle is not loaded again",
                                   [*m, "result"], registry=r)
        self.reloads = Counter("sdlgm_reloads", "reloads (SIGHUP or POST /admin/reload) by result: done, or failed "
                               "when the bundles could not even be listed (every model kept)", ["result"],
                               registry=r)
        self._refused: dict[str, dict[str, str]] = {}  # the labels of each sdlgm_model_refused series at 1
        self._series: dict[str, ModelSeries] = {}
        if not self.multiprocess:
            ProcessCollector(registry=r)

    def of(self, model: str) -> dict[str, str]:
        """The `model` and `version` labels of a model's series (version "" for a model not loaded)."""
        return {"model": model, "version": self._versions.get(model, "")}

    def model(self, name: str) -> ModelSeries:
        """The series of a model (a loaded model's name, or "" for none) at the version served now. Safe from
        any thread: a series made for a version just replaced is made again at the next call."""
        version = self._versions.get(name, "")
        series = self._series.get(name)
        if series is None or series.version != version:
            series = self._series[name] = ModelSeries(self, name, version)
        return series

    def model_loaded(self, runtime: ModelRuntime) -> None:
        """A model is served: its version labels its series from now on, and its info and reference are set."""
        m = runtime.manifest
        self._versions[runtime.name] = m.version
        labels = self.of(runtime.name)
        self.model_info.labels(**labels, fingerprint=m.fingerprint, provider=runtime.provider).set(1)
        reference = reference_nrmse(m)
        if reference is not None:
            self.reference_nrmse.labels(**labels).set(reference)

    def model_unloaded(self, runtime: ModelRuntime) -> None:
        """A model is no longer served (replaced by a reload): its info series goes to 0 and is dropped."""
        m = runtime.manifest
        labels = {"model": runtime.name, "version": m.version, "fingerprint": m.fingerprint,
                  "provider": runtime.provider}
        self.model_info.labels(**labels).set(0)  # what a multiprocess file keeps after remove
        self.model_info.remove(*labels.values())

    def bundle_refused(self, name: str, refused: bool) -> None:
        """Whether the bundle on disk under this name is refused now (sdlgm_model_refused)."""
        before = self._refused.pop(name, None)
        if before is not None:
            self.model_refused.labels(**before).set(0)
        if refused:
            labels = self._refused[name] = self.of(name)
            self.model_refused.labels(**labels).set(1)

    @property
    def multiprocess(self) -> bool:
        return bool(os.environ.get(MULTIPROC_ENV))

    def collectors(self) -> CollectorRegistry:
        """The registry /metrics exports: this process's, or, in multiprocess mode, every worker's merged."""
        if not self.multiprocess:
            return self.registry
        merged = CollectorRegistry()
        MultiProcessCollector(merged)
        merged.register(WorkerProcesses(os.environ[MULTIPROC_ENV]))
        return merged

    def exposition(self) -> bytes:
        """The Prometheus text of collectors()."""
        return generate_latest(self.collectors())

    def process_exits(self) -> None:
        """In multiprocess mode, drop this worker's live gauges (the `live*` modes) as it exits."""
        if self.multiprocess:
            mark_process_dead(os.getpid())
