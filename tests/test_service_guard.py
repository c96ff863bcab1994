"""The request guard as a bare ASGI app: the 413 for a streamed body comes as soon as the body is known
to be over the limit, after draining what a client still sending has left, and never waits on a body
that has already ended; a body under the limit reaches the app whole, in one message."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from service.metrics import Metrics
from service.middleware import RequestGuard

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

    guard = RequestGuard(app, Metrics(), max_body_bytes=LIMIT)
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
