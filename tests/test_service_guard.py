"""The request guard as a bare ASGI app: the 413 for a streamed body comes as soon as the body is known
to be over the limit, after draining what a client still sending has left, and never waits on a body
that has already ended; a body under the limit reaches the app whole, in one message. The shed guard:
a request whose estimated vectors do not fit its model's queue gets the 503 with its body drained
unread, one that fits reaches the app holding its estimate, given back after."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import anyio
import pytest

from bundle.formats import CodeSpace
from service.admission import Capacity, ShedGuard
from service.metrics import Metrics
from service.middleware import RequestGuard
from service.registry import ModelRegistry

LIMIT = 1024
SCOPE = {"type": "http", "method": "POST", "path": "/encode", "headers": [(b"content-type", b"application/json")]}


def run_guard(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[bytes], int]:
    """Feed the messages to the guard; (what it sent, the bodies the app got, messages left unread).
    Reading past the last message fails the test: the client has nothing more to send."""
    pending = list(messages)
    sent: list[dict[str, Any]] = []
    seen: list[bytes] = []

    async def receive() -> dict[str, Any]:
        if not pending:
            raise AssertionError("the guard waited for a message after the end of the body")
        return pending.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        message = await receive()
        seen.append(message["body"])
        assert message["more_body"] is False

    guard = RequestGuard(app, Metrics(), max_body_bytes=LIMIT, routes=[])
    anyio.run(guard, dict(SCOPE), receive, send)
    return sent, seen, len(pending)


def body(n: int, more: bool) -> dict[str, Any]:
    return {"type": "http.request", "body": b" " * n, "more_body": more}


def status(sent: list[dict[str, Any]]) -> int:
    return int(sent[0]["status"])


def test_a_complete_body_over_the_limit_is_answered_without_waiting() -> None:
    sent, seen, left = run_guard([body(LIMIT + 1, more=False)])
    assert (status(sent), seen, left) == (413, [], 0)


def test_a_body_over_the_limit_that_ends_in_the_crossing_chunk_is_answered_at_once() -> None:
    sent, seen, left = run_guard([body(LIMIT, more=True), body(1, more=False)])
    assert (status(sent), seen, left) == (413, [], 0)


def test_a_client_still_sending_is_drained_before_the_413() -> None:
    sent, seen, left = run_guard([body(LIMIT // 2, True), body(LIMIT, True), body(100, True), body(0, False)])
    assert (status(sent), seen, left) == (413, [], 0)


def test_draining_stops_after_as_much_again_as_the_limit() -> None:
    chunks = [body(LIMIT + 1, True)] + [body(LIMIT // 4, True)] * 8 + [body(0, False)]
    sent, _, left = run_guard(chunks)
    assert status(sent) == 413
    assert left == 9 - 5  # of 8 quarter-chunks and the end, the drain reads 5: past the limit again


@pytest.mark.parametrize("sizes", [[LIMIT], [LIMIT // 2, LIMIT // 2], [10, 0, 20]])
def test_a_body_within_the_limit_reaches_the_app_in_one_message(sizes: list[int]) -> None:
    messages = [body(n, more=i < len(sizes) - 1) for i, n in enumerate(sizes)]
    sent, seen, left = run_guard(messages)
    assert (sent, seen, left) == ([], [b" " * sum(sizes)], 0)


# --- the shed guard: a full queue answers before the body is read ----------------------------------------


def run_shed_guard(capacity: Capacity, path: str, headers: list[tuple[bytes, bytes]], messages: list[dict[str, Any]],
                   query: bytes = b"") -> tuple[list[dict[str, Any]], list[Any], int]:
    """Feed the messages to the ShedGuard over a registry holding kpi5g (D = 80); (what it sent, the holds
    the app saw, messages left unread)."""
    registry = ModelRegistry("kpi5g", [], {"kpi5g": SimpleNamespace(manifest=SimpleNamespace(  # type: ignore[dict-item]
        D=80, L0=4, code_space=CodeSpace(K=64, L0=4)))})
    scope = {"type": "http", "method": "POST", "path": path, "headers": headers, "query_string": query,
             "app": SimpleNamespace(state=SimpleNamespace(registry=registry))}
    pending = list(messages)
    sent: list[dict[str, Any]] = []
    holds: list[Any] = []

    async def receive() -> dict[str, Any]:
        return pending.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        hold = scope["state"]["sdlgm_hold"]
        holds.append((hold.model, hold.vectors, capacity.used("kpi5g")))

    guard = ShedGuard(app, Metrics(), capacity, max_batch=300, max_body_bytes=1 << 20)
    anyio.run(guard, scope, receive, send)
    return sent, holds, len(pending)


def rows_headers(n_bytes: int, media: bytes = b"application/octet-stream") -> list[tuple[bytes, bytes]]:
    return [(b"content-type", media), (b"content-length", str(n_bytes).encode())]


def test_a_request_that_does_not_fit_is_shed_without_its_body_reaching_the_app() -> None:
    capacity = Capacity(100, Metrics())
    assert capacity.hold("kpi5g", 90) is not None
    size = 4 * 80 * 20  # 20 binary rows, sent in two chunks: drained, never parsed
    sent, holds, left = run_shed_guard(capacity, "/encode", rows_headers(size), [body(size // 2, True),
                                                                                  body(size // 2, False)])
    assert (status(sent), holds, left) == (503, [], 0)
    assert (b"retry-after", b"1") in sent[0]["headers"]
    assert json.loads(sent[1]["body"]) == {"kind": "overloaded", "error": "model 'kpi5g' cannot queue 20 more "
                                           "vectors: 90 of its 100 are queued (SDLGM_QUEUE_MAX_VECTORS); retry after 1 s"}
    assert capacity.used("kpi5g") == 90


@pytest.mark.parametrize(("path", "headers", "query", "held"), [
    ("/encode", rows_headers(4 * 80 * 7), b"", 7),  # binary rows: exactly
    ("/encode", rows_headers(16 * 80 * 5, b"application/json"), b"", 5),  # JSON: at 16 bytes a value
    ("/decode", rows_headers(3 * 9), b"format=enum", 9),  # enum codes: exactly
    ("/v2/models/kpi5g-encode/infer", rows_headers(100 + 4 * 80 * 6) + [(b"inference-header-content-length", b"100")],
     b"", 6),  # the binary tensor after its JSON header
    ("/encode", rows_headers(4 * 80 * 500), b"", 300),  # never more than SDLGM_MAX_BATCH
])
def test_a_request_that_fits_runs_holding_its_estimate_which_is_given_back(
        path: str, headers: list[tuple[bytes, bytes]], query: bytes, held: int) -> None:
    capacity = Capacity(1000, Metrics())
    sent, holds, _ = run_shed_guard(capacity, path, headers, [body(10, False)], query)
    assert (sent, holds, capacity.used("kpi5g")) == ([], [("kpi5g", held, held)], 0)


@pytest.mark.parametrize(("path", "query"), [("/encode", b"model=other"), ("/v2/models/other-encode/infer", b""),
                                             ("/v1/models", b""), ("/encode", b"format=zip")])
def test_requests_for_no_loaded_model_pass_through_untouched(path: str, query: bytes) -> None:
    capacity = Capacity(1, Metrics())
    assert capacity.hold("kpi5g", 1) is not None  # full: yet nothing here is shed

    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["path"])

    guard = ShedGuard(app, Metrics(), capacity, max_batch=300, max_body_bytes=LIMIT)
    registry = ModelRegistry("kpi5g", [], {"kpi5g": SimpleNamespace(manifest=SimpleNamespace(  # type: ignore[dict-item]
        D=80, L0=4))})
    scope = {"type": "http", "method": "POST", "path": path, "headers": rows_headers(8), "query_string": query,
             "app": SimpleNamespace(state=SimpleNamespace(registry=registry))}
    anyio.run(guard, scope, None, None)
    assert seen == [path]
