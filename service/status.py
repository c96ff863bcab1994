"""The figures of the built-in status page (GET /, service/static/) as GET /v1/status answers them: read
from the collectors /metrics exports (every worker's with several), so the page shows what Prometheus
would scrape. Counts are totals since the service started; the page turns two answers into rates.

Latency quantiles are Prometheus's histogram_quantile over the cumulative buckets of
sdlgm_request_duration_seconds since start (linear inside the bucket that holds the rank; the largest
finite bound when the rank falls in +Inf). The round-trip NRMSE is sqrt(sdlgm_roundtrip_squared_nrmse_total
/ sdlgm_roundtrip_nrmse_count), the definition of the bundle's own evaluation (service.quality), beside
that figure.
"""

from __future__ import annotations

import math
import re
import time
from collections import defaultdict
from collections.abc import Iterable

from prometheus_client.registry import CollectorRegistry
from prometheus_client.samples import Sample
from pydantic import BaseModel, Field

QUANTILES = (0.5, 0.95, 0.99)
# The inference endpoints (the rest is health, metrics, docs and this page): as the HPA's adapter rule counts.
TRAFFIC = re.compile(r"/encode|/decode|/predict|/v2/models/.+/infer")

Labels = tuple[tuple[str, str], ...]


class EndpointStatus(BaseModel):
    endpoint: str = Field(description="route template")
    traffic: bool = Field(description="an inference endpoint (not health, metrics, docs or this page)")
    requests: int
    errors: int = Field(description="answers with a 4xx or 5xx status")
    latency_s: dict[str, float | None] = Field(description="p50, p95, p99 since start, in seconds")


class ModelStatus(BaseModel):
    model: str
    version: str
    fingerprint: str
    provider: str
    requests: int = Field(description="requests answered for this model, every endpoint")
    codes_sent: int = Field(description="codes sent by /encode")
    mean_nnz: float | None = Field(description="mean non-zero entries per code")
    code_bytes: dict[str, float] = Field(description="mean bytes of one code, per wire format")
    compression_ratio: float | None = Field(description="raw float32 bytes encoded / binary code bytes")
    roundtrip_vectors: int = Field(description="vectors whose round trip was measured (SDLGM_QUALITY_SAMPLE_RATE)")
    roundtrip_nrmse: float | None = Field(description="NRMSE of decode(encode(x)) over them")
    reference_nrmse: float | None = Field(description="the bundle's own evaluation figure (manifest.json)")


class Status(BaseModel):
    time: float = Field(description="server time, Unix seconds: rates are differences over it")
    ready: bool
    in_flight: int
    requests: int = Field(description="requests to the inference endpoints")
    resident_memory_bytes: float | None = Field(description="of every worker process together")
    endpoints: list[EndpointStatus]
    models: list[ModelStatus]


def histogram_quantile(q: float, buckets: dict[float, float]) -> float | None:
    """Prometheus's histogram_quantile of cumulative bucket counts {upper bound: count}; None when empty."""
    bounds = sorted(buckets)
    if not bounds or bounds[-1] != math.inf or buckets[math.inf] == 0:
        return None
    rank = q * buckets[math.inf]
    lower, below = 0.0, 0.0
    for i, upper in enumerate(bounds):
        count = buckets[upper]
        if count >= rank:
            if upper == math.inf:
                return bounds[i - 1] if i > 0 else None
            if i == 0 and upper <= 0:
                return upper
            return lower + (upper - lower) * (rank - below) / (count - below) if count > below else upper
        lower, below = upper, count
    return None


class _Samples:
    """The samples of one scrape, summed over the labels a figure does not keep."""

    def __init__(self, samples: Iterable[Sample]) -> None:
        self._by_name: dict[str, list[Sample]] = defaultdict(list)
        for s in samples:
            self._by_name[s.name].append(s)

    def total(self, name: str, **match: str) -> float:
        return sum(s.value for s in self._by_name.get(name, []) if _matches(s, match))

    def by(self, name: str, *keys: str, **match: str) -> dict[tuple[str, ...], float]:
        out: dict[tuple[str, ...], float] = defaultdict(float)
        for s in self._by_name.get(name, []):
            if _matches(s, match):
                out[tuple(s.labels.get(k, "") for k in keys)] += s.value
        return out

    def buckets(self, name: str, **match: str) -> dict[float, float]:
        return {float(le): v for (le,), v in self.by(f"{name}_bucket", "le", **match).items()}

    def labels_of(self, name: str) -> list[dict[str, str]]:
        return [s.labels for s in self._by_name.get(name, []) if s.value > 0]


def _matches(s: Sample, match: dict[str, str]) -> bool:
    return all(s.labels.get(k) == v for k, v in match.items())


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def status_of(collectors: CollectorRegistry, ready: bool) -> Status:
    """The status figures of the metrics these collectors hold."""
    s = _Samples(sample for metric in collectors.collect() for sample in metric.samples)
    endpoints = []
    for (endpoint,), n in sorted(s.by("sdlgm_requests_total", "endpoint").items()):
        errors = sum(v for (status,), v in s.by("sdlgm_requests_total", "status", endpoint=endpoint).items()
                     if status[:1] in ("4", "5"))
        buckets = s.buckets("sdlgm_request_duration_seconds", endpoint=endpoint)
        endpoints.append(EndpointStatus(
            endpoint=endpoint, traffic=TRAFFIC.fullmatch(endpoint) is not None, requests=int(n), errors=int(errors),
            latency_s={f"p{round(q * 100)}": histogram_quantile(q, buckets) for q in QUANTILES}))
    models = []
    for info in sorted(s.labels_of("sdlgm_model_info"), key=lambda labels: labels["model"]):
        m = {"model": info["model"], "version": info["version"]}
        sizes = {fmt: mean for (fmt,), total in s.by("sdlgm_code_size_bytes_sum", "format", **m).items()
                 if (mean := _ratio(total, s.total("sdlgm_code_size_bytes_count", format=fmt, **m))) is not None}
        measured = s.total("sdlgm_roundtrip_nrmse_count", **m)
        squared = _ratio(s.total("sdlgm_roundtrip_squared_nrmse_total", **m), measured)
        reference = s.by("sdlgm_model_reference_nrmse", **m)
        models.append(ModelStatus(
            **m, fingerprint=info["fingerprint"], provider=info["provider"],
            requests=int(s.total("sdlgm_requests_total", **m)), codes_sent=int(s.total("sdlgm_code_nnz_count", **m)),
            mean_nnz=_ratio(s.total("sdlgm_code_nnz_sum", **m), s.total("sdlgm_code_nnz_count", **m)),
            code_bytes=sizes,
            compression_ratio=_ratio(s.total("sdlgm_input_bytes_total", **m), s.total("sdlgm_code_bytes_total", **m)),
            roundtrip_vectors=int(measured), roundtrip_nrmse=None if squared is None else math.sqrt(squared),
            reference_nrmse=reference[()] if reference else None))
    memory = s.total("process_resident_memory_bytes")
    return Status(time=time.time(), ready=ready, in_flight=int(s.total("sdlgm_in_flight_requests")),
                  requests=sum(e.requests for e in endpoints if e.traffic),
                  resident_memory_bytes=memory or None, endpoints=endpoints, models=models)
