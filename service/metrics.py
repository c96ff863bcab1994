"""Prometheus metrics, one CollectorRegistry per app (so tests can build several apps in one process), or,
under several worker processes (SDLGM_WORKERS > 1: the launcher sets PROMETHEUS_MULTIPROC_DIR before any
worker imports prometheus_client), prometheus_client's multiprocess mode: each worker writes its values
to files in that directory and /metrics sums every worker's (gauges by their `multiprocess_mode`).

Names follow Prometheus conventions (base units, `_total`, `_seconds`, `_bytes`). Label values are
bounded: `endpoint` is a route template ("other" for unknown paths), `model` a loaded model's name or ""
when the request named none that is loaded. Compression ratio = sdlgm_input_bytes_total /
sdlgm_code_bytes_total (raw float32 bytes of the encoded vectors against the binary codes' bytes).
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
MODEL_STATE_KEY = "sdlgm_model"  # the request state's model name: the `model` label of request metrics

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
INFERENCE_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
BATCH_BUCKETS = tuple(float(2**i) for i in range(17))  # 1 .. 65536, the range of max_batch
REQUESTS_BUCKETS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0)
COUNT_BUCKETS = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 255.0)  # L0 <= 255
CODE_SIZE_BUCKETS = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 16.0, 24.0, 32.0, 64.0, 128.0, 256.0, 1024.0)
NRMSE_BUCKETS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.8, 1.0, 1.5, 2.0, 5.0)


class Metrics:
    """Every metric family the service exports, registered in its own registry."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("sdlgm_requests", "HTTP requests answered", ["endpoint", "model", "status"],
                                registry=r)
        self.request_duration = Histogram("sdlgm_request_duration_seconds", "HTTP request latency",
                                          ["endpoint", "model", "status"], buckets=LATENCY_BUCKETS, registry=r)
        self.inference = Histogram("sdlgm_inference_seconds", "onnxruntime time per graph run",
                                   ["model", "graph"], buckets=INFERENCE_BUCKETS, registry=r)
        self.batch_size = Histogram("sdlgm_batch_size", "vectors or codes per request", ["endpoint", "model"],
                                    buckets=BATCH_BUCKETS, registry=r)
        self.code_L_hat = Histogram("sdlgm_code_L_hat", "L_hat (active slots) of each code sent", ["model"],
                                    buckets=COUNT_BUCKETS, registry=r)
        self.code_nnz = Histogram("sdlgm_code_nnz", "non-zero entries of each code sent", ["model"],
                                  buckets=COUNT_BUCKETS, registry=r)
        self.input_bytes = Counter("sdlgm_input_bytes", "raw float32 bytes of the vectors encoded", ["model"],
                                   registry=r)
        self.code_bytes = Counter("sdlgm_code_bytes", "binary code bytes sent for them", ["model"], registry=r)
        self.code_size = Histogram("sdlgm_code_size_bytes", "bytes of each code sent, in its wire format",
                                   ["model", "format"], buckets=CODE_SIZE_BUCKETS, registry=r)
        self.roundtrip_nrmse = Histogram(
            "sdlgm_roundtrip_nrmse", "normalized RMSE of decode(encode(x)) against x, per vector of the sampled "
            "/encode requests (SDLGM_QUALITY_SAMPLE_RATE)", ["model"], buckets=NRMSE_BUCKETS, registry=r)
        self.errors = Counter("sdlgm_errors", "error responses by kind", ["kind"], registry=r)
        self.in_flight = Gauge("sdlgm_in_flight_requests", "HTTP requests being answered", registry=r,
                               multiprocess_mode="livesum")
        self.model_info = Gauge("sdlgm_model_info", "1 for each loaded model",
                                ["name", "version", "fingerprint", "provider"], registry=r,
                                multiprocess_mode="livemax")
        self.queue_vectors = Gauge("sdlgm_queue_vectors", "vectors or codes admitted and not yet answered, queued or "
                                   "running (each worker caps its own at SDLGM_QUEUE_MAX_VECTORS)", ["model"],
                                   registry=r, multiprocess_mode="livesum")
        self.shed = Counter("sdlgm_shed_requests", "requests answered 503 overloaded: their vectors did not fit "
                            "the model's queue", ["model"], registry=r)
        self.coalesced_batch_size = Histogram(
            "sdlgm_coalesced_batch_size", "vectors or codes per onnxruntime batch of coalesced requests "
            "(dynamic batching)", ["model", "operation"], buckets=BATCH_BUCKETS, registry=r)
        self.coalesced_requests = Histogram(
            "sdlgm_coalesced_requests", "requests per coalesced batch (dynamic batching)", ["model", "operation"],
            buckets=REQUESTS_BUCKETS, registry=r)

    @property
    def multiprocess(self) -> bool:
        return bool(os.environ.get(MULTIPROC_ENV))

    def exposition(self) -> bytes:
        """The Prometheus text of this process's metrics, or, in multiprocess mode, of every worker's."""
        if not self.multiprocess:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        MultiProcessCollector(merged)
        return generate_latest(merged)

    def process_exits(self) -> None:
        """In multiprocess mode, drop this worker's live gauges (the `live*` modes) as it exits."""
        if self.multiprocess:
            mark_process_dead(os.getpid())
