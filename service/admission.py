"""Load shedding: a cap on the vectors each model has admitted and not yet answered (SDLGM_QUEUE_MAX_VECTORS),
and the 503 with Retry-After a request gets when its vectors do not fit.

Two checks, both against the same count (`Capacity`, on the event loop only; the gauge
sdlgm_queue_vectors shows it):
- `ShedGuard`, a pure ASGI middleware, before the body is read: for POST /encode, /decode, /predict and
  the V2 infer routes of a loaded model it estimates the request's vectors from Content-Length
  (`estimate`; a body of no declared length as the largest body SDLGM_MAX_BODY_BYTES allows) and holds
  that many (a `Hold`); when they do not fit, it answers 503 without parsing the body, reading it out
  only when it is at most SHED_DRAIN_BYTES (a larger one's connection closes, lingering: service.transport). Requests being read and parsed are so already counted, which
  bounds their memory. It also sets every POST's cap of JSON values (`json_value_cap`, twice the largest
  valid batch), which service.fastjson checks before parsing.
- the route, after parsing: `Hold.resize` to the exact count, 503 when the rest does not fit. The
  scheduler (service.batching) then owns the hold and gives it back when the request's run is over.
A request never needs more than SDLGM_MAX_BATCH vectors (settings keep the cap at least that), so a lone
request always fits.

`Door` gives the same refusal earlier still: the HTTP connection (service.transport) asks it as soon as a
request's head is parsed, before any ASGI task, middleware or response object is made, and writes the 503
itself (one write), then closes lingering. Under a flood of large batches nearly every request is shed,
and answering them through the whole ASGI stack kept the event loop busy most of the time, so /healthz
waited behind them (docs/reliability.md, "Overload"). The door sheds only what ShedGuard would shed at once
(a body over SHED_DRAIN_BYTES, which it would not read), with the same answer and the same metrics, and only
when nothing before ShedGuard could answer otherwise: no token file (service.auth) and no CORS. It also
answers `GET /healthz` with `Connection: close` (a liveness probe: the kubelet's, benchmarks/overload.py's),
with /healthz's body and metrics.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import Headers, QueryParams
from starlette.types import ASGIApp, Receive, Scope, Send

from bundle.formats import FORMATS
from bundle.manifest import Manifest
from service.binary import OCTET_STREAM, media_type
from service.errors import ServiceError, error_response
from service.fastjson import JSON_VALUES_STATE_KEY
from service.metrics import MODEL_STATE_KEY, Metrics
from service.middleware import drain_body, endpoint_of, expects_continue
from service.registry import ModelRegistry

HOLD_STATE_KEY = "sdlgm_hold"
DOOR_STATE_KEY = "sdlgm_door"
MAX_ENDPOINTS_KEPT = 256  # the lifespan state's Door (service.app), which the connections ask
# A shed request's body of up to this many bytes is read out before its 503, so that its connection stays
# open; a larger one is not read (reading it through the app costs the event loop as much as serving it): the
# 503 then closes the connection (service.deadline), lingering so that a client still sending reads it
# (service.transport). A body of no declared length is read up to this many bytes.
SHED_DRAIN_BYTES = 64 * 1024
RETRY_AFTER_S = 1
# A float32 value in JSON, as Python or numpy write it, takes 8 to 26 bytes with its separator (about 21 for
# the KPI windows): at 16, most bodies are held for more vectors than they turn out to have (the hold then
# shrinks), rather than fewer (it must then grow after parsing, which fails while the queue is full and
# wastes the parse: under a flood of large bodies, a request that fitted at the door would be refused).
JSON_BYTES_PER_VALUE = 16
JSON_CAP_BATCHES = 2
JSON_FIELD_VALUES = 64  # besides the rows: the body's own fields, a V2 request's inputs and parameters
BYTES_PER_CODE = 32  # a JSON code ({"binary": "..."} or indices and counts) or a framed one counts as at most this
NATIVE_OPERATIONS = {"/encode": "encode", "/decode": "decode", "/predict": "predict"}
V2_INFER_PREFIX = "/v2/models/"
V2_HEADER_LENGTH = "inference-header-content-length"


class Capacity:
    """Vectors admitted and not yet answered, per model, against one limit. Used on the event loop only."""

    def __init__(self, limit: int, metrics: Metrics) -> None:
        self.limit = limit
        self._used: dict[str, int] = {}
        self._metrics = metrics

    def used(self, model: str) -> int:
        return self._used.get(model, 0)

    def adjust(self, model: str, n: int) -> None:
        self._used[model] = self.used(model) + n
        self._metrics.model(model).queue_vectors.set(self._used[model])

    def hold(self, model: str, n: int) -> Hold | None:
        """n vectors of the model held, or None when they do not fit."""
        if self.used(model) + n > self.limit:
            return None
        self.adjust(model, n)
        return Hold(self, model, n)


@dataclass
class Hold:
    """Vectors a request holds in its model's capacity; `handed`: the scheduler gives them back, not the
    request (service.batching, once the request is queued)."""

    capacity: Capacity
    model: str
    vectors: int
    handed: bool = False

    def resize(self, n: int) -> bool:
        """Hold exactly n vectors; False (and no change) when growing to n does not fit."""
        extra = n - self.vectors
        if extra > 0 and self.capacity.used(self.model) + extra > self.capacity.limit:
            return False
        self.capacity.adjust(self.model, extra)
        self.vectors = n
        return True

    def release(self) -> None:
        """Give the vectors back (once; later calls do nothing)."""
        if self.vectors:
            self.capacity.adjust(self.model, -self.vectors)
            self.vectors = 0


def overloaded(model: str, n: int, used: int, limit: int) -> ServiceError:
    return ServiceError(503, "overloaded", f"model {model!r} cannot queue {n} more vectors: {used} of its "
                        f"{limit} are queued (SDLGM_QUEUE_MAX_VECTORS); retry after {RETRY_AFTER_S} s",
                        headers={"Retry-After": str(RETRY_AFTER_S)})


def estimate(operation: str, binary: bool, payload: int, manifest: Manifest, fmt: str) -> int:
    """The vectors a body of `payload` bytes holds, at least 1: exact for binary rows and enum codes, a
    typical count for JSON vectors (JSON_BYTES_PER_VALUE a value), and for other codes one a
    BYTES_PER_CODE: a body never holds less than one vector or code per that many bytes (up to the batch
    cap), so the bodies a model's capacity admits at once are bounded in bytes too."""
    if operation != "decode":
        per_vector = 4 * manifest.D if binary else JSON_BYTES_PER_VALUE * manifest.D
        return max(1, payload // per_vector)
    if binary and fmt == "enum":
        return max(1, payload // manifest.code_space.enum_bytes)
    return max(1, payload // BYTES_PER_CODE)


def json_value_cap(manifest: Manifest, operation: str, max_batch: int) -> int:
    """The JSON values (commas) past which a body for this model's operation is refused unparsed
    (service.fastjson): twice a full batch of its vectors, or of its codes as indices and counts, and some
    fields. A batch a little over SDLGM_MAX_BATCH is still parsed, and told so exactly."""
    per_row = 2 * manifest.L0 + 2 if operation == "decode" else manifest.D
    return JSON_CAP_BATCHES * max_batch * per_row + JSON_FIELD_VALUES


@dataclass(frozen=True)
class Target:
    """What an inference request asks, as far as its path, query and headers tell before its body."""

    model: str
    operation: str
    binary: bool
    payload: int
    fmt: str


def target_of(scope: Scope, registry: ModelRegistry, max_body_bytes: int) -> Target | None:
    """The model and operation of an inference POST to a loaded model; None for anything else. A body of
    no declared length (chunked) counts as max_body_bytes: it may grow that large before it is refused."""
    path: str = scope["path"]
    headers = Headers(scope=scope)
    declared = headers.get("content-length", "")
    size = int(declared) if declared.isdigit() else max_body_bytes
    query = QueryParams(scope.get("query_string", b""))
    if path in NATIVE_OPERATIONS:
        name = query.get("model") or registry.default
        fmt = query.get("format", "v1")
        if name not in registry.models or fmt not in FORMATS:
            return None
        return Target(name, NATIVE_OPERATIONS[path], media_type(headers) == OCTET_STREAM, size, fmt)
    parts = path.removeprefix(V2_INFER_PREFIX).split("/")
    if not path.startswith(V2_INFER_PREFIX) or parts[-1] != "infer" or len(parts) not in (2, 4):
        return None
    bundle, _, operation = parts[0].rpartition("-")
    if bundle not in registry.models or operation not in NATIVE_OPERATIONS.values():
        return None
    head = headers.get(V2_HEADER_LENGTH, "")
    if head.isascii() and head.isdigit() and int(head) <= size:  # str.isdigit alone takes '²', which int() refuses  # binary tensors after a JSON header of that length
        return Target(bundle, operation, True, size - int(head), "v1")
    return Target(bundle, operation, False, size, "v1")


class ShedGuard:
    """503 with Retry-After, before the body is read, for an inference request whose estimated vectors do
    not fit its model's capacity; otherwise the request runs holding them (scope state HOLD_STATE_KEY)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, capacity: Capacity, max_batch: int,
                 max_body_bytes: int) -> None:
        self.app, self.metrics, self.capacity = app, metrics, capacity
        self.max_batch, self.max_body_bytes = max_batch, max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        registry: ModelRegistry | None = getattr(scope["app"].state, "registry", None) \
            if scope["type"] == "http" and scope["method"] == "POST" else None
        target = target_of(scope, registry, self.max_body_bytes) if registry is not None else None
        if registry is None or target is None:
            if registry is not None and registry.models:  # a POST for no loaded model: the largest cap
                scope.setdefault("state", {})[JSON_VALUES_STATE_KEY] = max(
                    json_value_cap(m.manifest, op, self.max_batch) for m in registry.models.values()
                    for op in NATIVE_OPERATIONS.values())
            await self.app(scope, receive, send)
            return
        manifest = registry.models[target.model].manifest
        scope.setdefault("state", {})[JSON_VALUES_STATE_KEY] = json_value_cap(manifest, target.operation,
                                                                              self.max_batch)
        n = min(estimate(target.operation, target.binary, target.payload, manifest, target.fmt), self.max_batch)
        hold = self.capacity.hold(target.model, n)
        if hold is None:
            scope.setdefault("state", {})[MODEL_STATE_KEY] = target.model
            self.metrics.model(target.model).shed.inc()
            headers = Headers(scope=scope)
            declared = headers.get("content-length", "")
            small = not declared.isdigit() or int(declared) <= SHED_DRAIN_BYTES
            if small and not expects_continue(headers):  # read out: the connection can stay open
                await drain_body(receive, SHED_DRAIN_BYTES)
            exc = overloaded(target.model, n, self.capacity.used(target.model), self.capacity.limit)
            await error_response(self.metrics, exc.status, exc.kind, exc.message, headers=exc.headers)(
                scope, receive, send)
            return
        scope.setdefault("state", {})[HOLD_STATE_KEY] = hold
        try:
            await self.app(scope, receive, send)
        finally:
            if not hold.handed:
                hold.release()


Answer = tuple[int, list[tuple[bytes, bytes]], bytes]  # status, headers, body


def _json_answer(status: int, content: dict[str, Any], headers: list[tuple[bytes, bytes]]) -> Answer:
    """An answer as Starlette's JSONResponse writes it (compact JSON, its content type and length)."""
    body = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    return status, [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json"),
                    *headers], body


class Door:
    """What an HTTP connection answers itself from a request's head (see the module docstring): the
    ShedGuard's 503 of a large body that does not fit, and /healthz for a probe that closes. Each answer
    is counted as the middlewares would count it (sdlgm_requests_total and its duration, sdlgm_errors_total,
    sdlgm_shed_requests_total)."""

    def __init__(self, state: Any, metrics: Metrics, capacity: Capacity, max_batch: int, max_body_bytes: int,
                 routes: list[Any]) -> None:
        self.state, self.metrics, self.capacity = state, metrics, capacity
        self.max_batch, self.max_body_bytes, self.routes = max_batch, max_body_bytes, routes
        self._endpoints: dict[str, str] = {}  # path -> route template, for the paths of loaded models' operations

    def answer(self, method: str, path: str, query: bytes, headers: list[tuple[bytes, bytes]]) -> Answer | None:
        """The answer to a request of this head (lower-case header names), or None: the app answers it."""
        if method == "GET" and path == "/healthz":
            return self._healthz(headers)
        if method == "POST":
            return self._shed(path, query, headers)
        return None

    def _count(self, endpoint: str, model: str, status: int, started: float) -> None:
        count, duration = self.metrics.model(model).request(endpoint, str(status))
        count.inc()
        duration.observe(time.perf_counter() - started)

    def _healthz(self, headers: list[tuple[bytes, bytes]]) -> Answer | None:
        started = time.perf_counter()
        if not any(k == b"connection" and b"close" in v.lower() for k, v in headers):
            return None  # a keep-alive client: the app answers (its connection stays in step)
        answer = _json_answer(200, {"status": "ok", "pid": os.getpid()}, [(b"connection", b"close")])
        self._count("/healthz", "", 200, started)
        return answer

    def _shed(self, path: str, query: bytes, headers: list[tuple[bytes, bytes]]) -> Answer | None:
        started = time.perf_counter()
        registry: ModelRegistry | None = getattr(self.state, "registry", None)
        if registry is None:
            return None
        scope = {"type": "http", "method": "POST", "path": path, "root_path": "", "query_string": query,
                 "headers": headers}
        fields = Headers(scope=scope)
        declared = fields.get("content-length", "")
        if not declared.isdigit() or int(declared) <= SHED_DRAIN_BYTES or int(declared) > self.max_body_bytes:
            return None  # read out, of no declared length, or over the limit (413): the app's to answer
        target = target_of(scope, registry, self.max_body_bytes)
        if target is None:
            return None
        manifest = registry.models[target.model].manifest
        n = min(estimate(target.operation, target.binary, target.payload, manifest, target.fmt), self.max_batch)
        used = self.capacity.used(target.model)
        if used + n <= self.capacity.limit:
            return None  # it fits: the ShedGuard holds it
        self.metrics.model(target.model).shed.inc()
        exc = overloaded(target.model, n, used, self.capacity.limit)
        self.metrics.errors.labels(kind=exc.kind).inc()
        answer = _json_answer(exc.status, {"error": exc.message, "kind": exc.kind},
                              [(k.lower().encode(), v.encode()) for k, v in (exc.headers or {}).items()]
                              + [(b"connection", b"close")])
        endpoint = self._endpoints.get(path)
        if endpoint is None:
            endpoint = endpoint_of(self.routes, scope)
            if len(self._endpoints) < MAX_ENDPOINTS_KEPT:  # a V2 path's version segment is the client's
                self._endpoints[path] = endpoint
        self._count(endpoint, target.model, exc.status, started)
        return answer
