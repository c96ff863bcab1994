"""Two pure ASGI middlewares: request metrics around everything, and the request guard (415 and 413).

MetricsMiddleware counts every answer by endpoint, model and status; a request whose client went away
before any answer (it disconnected mid-body, say) is counted as status "499" (nginx's "client closed
request"), not as the 500 a request that failed in the app without answering is.

RequestGuard answers 415 when a POST body is not JSON (nor application/octet-stream on the endpoints that
take binary bodies: /encode, /decode and the KServe V2 ones, which also take a body without Content-Type,
as tritonclient sends it; POST /admin/reload reads no body and takes any), and 413 when the body is over SDLGM_MAX_BODY_BYTES:
from Content-Length before reading it, or while reading a body streamed without it (chunked). It reads
the whole body before the app sees it (the app parses JSON, so it needs all of it anyway) and hands it on
in one message. Before refusing a body the client is still sending, it reads and discards it (up to
DRAIN_FACTOR times the limit, for at most DRAIN_S), so that the client reads the answer rather than a
connection reset by a close with its bytes unread: a plain client (urllib) sends its whole body before it
reads anything. Not when the client asked `Expect: 100-continue`: it sends nothing until answered.
"""

from __future__ import annotations

import time

import anyio
from starlette.datastructures import Headers
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.binary import OCTET_STREAM, media_type
from service.errors import error_response
from service.metrics import MODEL_STATE_KEY, Metrics

DRAIN_S = 2.0
DRAIN_FACTOR = 4  # a declared body up to this many times the limit is read out before its 413
BODY_METHODS = {"POST", "PUT", "PATCH"}
BINARY_PATHS = {"/encode", "/decode"}
BODILESS_PATHS = {"/admin/reload"}  # POSTs that read no body: any content type (or none) is let through
CLIENT_CLOSED = 499
V2_PREFIX = "/v2/"


def refused_media(path: str, media: str) -> str | None:
    """Why a body of this media type cannot go to this path (the 415's message), None when it can."""
    if media == "application/json" or media.endswith("+json") or path in BODILESS_PATHS:
        return None
    if path.startswith(V2_PREFIX):
        if media in ("", OCTET_STREAM):
            return None
        return f"content type {media!r} is not supported; send JSON or a KServe V2 binary body ({OCTET_STREAM})"
    shown = media or "none"
    if path in BINARY_PATHS:
        if media == OCTET_STREAM:
            return None
        return f"content type {shown!r} is not supported; send JSON (application/json) or {OCTET_STREAM}"
    return f"content type {shown!r} is not supported; send JSON (application/json)"


async def drain_body(receive: Receive, max_bytes: int) -> None:
    """Read and discard the rest of a request body, up to about max_bytes and for at most DRAIN_S, so that a
    client still sending reads the answer rather than a reset connection; a body already ended costs nothing."""
    drained = 0
    with anyio.move_on_after(DRAIN_S):
        while drained <= max_bytes:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                return
            drained += len(message.get("body", b""))


def expects_continue(headers: Headers) -> bool:
    """Whether the client waits for `100 Continue` before it sends its body."""
    return headers.get("expect", "").strip().lower() == "100-continue"


def endpoint_of(routes: list[BaseRoute], scope: Scope) -> str:
    """The route template a request matched (bounded label values), "other" when none did."""
    partial = "other"
    for route in routes:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return str(getattr(route, "path", "other"))
        if match == Match.PARTIAL and partial == "other":
            partial = str(getattr(route, "path", "other"))
    return partial


class MetricsMiddleware:
    """sdlgm_requests_total, sdlgm_request_duration_seconds and sdlgm_in_flight_requests."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: list[BaseRoute]) -> None:
        self.app, self.metrics, self.routes = app, metrics, routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the client gets when the app raises before answering
        answered = False

        async def send_status(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status, answered = int(message["status"]), True
            await send(message)

        async def receive_status() -> Message:
            nonlocal status
            message = await receive()
            if message["type"] == "http.disconnect" and not answered:
                status = CLIENT_CLOSED
            return message

        start = time.perf_counter()
        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive_status, send_status)
        finally:
            self.metrics.in_flight.dec()
            route = scope.get("route")  # the router's own match; absent when no route ran (404, 413, 415)
            endpoint = str(route.path) if route is not None else endpoint_of(self.routes, scope)
            model = str(scope.get("state", {}).get(MODEL_STATE_KEY, ""))
            count, duration = self.metrics.model(model).request(endpoint, str(status))
            count.inc()
            duration.observe(time.perf_counter() - start)


class RequestGuard:
    """415 for a POST body of a media type its path does not take, 413 for a body over max_body_bytes. A
    request that no route takes (an unknown path, a method the path lacks) is not refused 415: the router
    answers it 404 or 405 (with Allow)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, max_body_bytes: int, routes: list[BaseRoute]) -> None:
        self.app, self.metrics, self.limit, self.routes = app, metrics, max_body_bytes, routes

    def _routed(self, scope: Scope) -> bool:
        """Whether a route takes this path and method (looked up only for a body about to be refused)."""
        return any(route.matches(scope)[0] == Match.FULL for route in self.routes)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, status: int, kind: str, msg: str) -> None:
        await error_response(self.metrics, status, kind, msg)(scope, receive, send)

    def _too_large(self, declared: str = "") -> str:
        size = f" of {declared} bytes" if declared else ""
        return f"request body{size} is over the limit of {self.limit} bytes (SDLGM_MAX_BODY_BYTES)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if scope["method"] in BODY_METHODS:
            refused = refused_media(scope["path"], media_type(headers))
            if refused is not None and self._routed(scope):
                if not expects_continue(headers):
                    await drain_body(receive, DRAIN_FACTOR * self.limit)
                await self._refuse(scope, receive, send, 415, "unsupported_media_type", refused)
                return
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            if int(declared) <= DRAIN_FACTOR * self.limit and not expects_continue(headers):
                await drain_body(receive, int(declared))
            await self._refuse(scope, receive, send, 413, "payload_too_large", self._too_large(declared))
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                if message.get("more_body", False):  # the client is still sending (a finished body needs no drain)
                    await drain_body(receive, self.limit)
                await self._refuse(scope, receive, send, 413, "payload_too_large", self._too_large())
                return
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(chunks[0] if len(chunks) == 1 else b"".join(chunks), receive), send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive callable that gives the buffered body once, then defers to the server's."""
    pending = [body]

    async def replay() -> Message:
        if pending:
            return {"type": "http.request", "body": pending.pop(), "more_body": False}
        return await receive()

    return replay
