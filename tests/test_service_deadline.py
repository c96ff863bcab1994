"""The request's time limits as a bare ASGI app (service.deadline, service.drain): a body that does not end
in time gets 408 with `Connection: close`, a request past its timeout 503 `timeout`, one past the drain's
deadline 503 `unavailable` with Retry-After; an answer given before the body ended, or while draining,
carries `Connection: close`; one already begun is finished; the middleware in a real app and the
metrics' status for a client gone mid-body (499)."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from service.deadline import DEADLINE_STATE_KEY, RequestDeadline
from service.drain import ANSWER_MARGIN_S, Drain
from service.metrics import Metrics
from service.middleware import MetricsMiddleware

SCOPE = {"type": "http", "method": "POST", "path": "/encode", "headers": []}
Sent = list[dict[str, Any]]


def body(n: int, more: bool) -> dict[str, Any]:
    return {"type": "http.request", "body": b"x" * n, "more_body": more}


async def read_all(receive: Any) -> None:
    while (await receive()).get("more_body", False):
        pass


async def answer(send: Any, status: int = 200) -> None:
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def run(app: Any, messages: list[dict[str, Any]], gap_s: float = 0.0, request_s: float = 5.0, body_s: float = 5.0,
        drain: Drain | None = None, drain_after_s: float | None = None) -> tuple[Sent, float]:
    """The app behind RequestDeadline, fed the messages gap_s apart (then nothing: a stalled client); what
    was sent and how long it took."""
    sent: Sent = []
    pending = list(messages)
    drain = drain or Drain(8.0)

    async def receive() -> dict[str, Any]:
        if not pending:
            await anyio.sleep_forever()
        await anyio.sleep(gap_s)
        return pending.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def main() -> float:
        guard = RequestDeadline(app, Metrics(), drain, request_timeout_s=request_s, body_timeout_s=body_s)
        started = anyio.current_time()
        async with anyio.create_task_group() as tg:
            if drain_after_s is not None:
                async def begin() -> None:
                    await anyio.sleep(drain_after_s)
                    drain.begin()
                tg.start_soon(begin)
            await guard(dict(SCOPE), receive, send)
        return anyio.current_time() - started

    took = anyio.run(main)
    return sent, took


def start(sent: Sent) -> tuple[int, dict[bytes, bytes]]:
    return int(sent[0]["status"]), dict(sent[0]["headers"])


def error(sent: Sent) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(sent[1]["body"])
    return out


async def reads_then_answers(scope: Any, receive: Any, send: Any) -> None:
    await read_all(receive)
    await answer(send)


def test_a_body_that_ends_in_time_is_answered_by_the_app_and_keeps_the_connection() -> None:
    sent, _ = run(reads_then_answers, [body(10, True), body(10, False)])
    status, headers = start(sent)
    assert status == 200 and b"connection" not in headers


@pytest.mark.parametrize(("request_s", "body_s", "setting", "limit"), [
    (5.0, 0.3, "SDLGM_BODY_TIMEOUT_S", 0.3), (0.3, 5.0, "SDLGM_REQUEST_TIMEOUT_S", 0.3)])
def test_a_trickled_body_gets_408_and_the_connection_closed_at_its_limit(request_s: float, body_s: float,
                                                                       setting: str, limit: float) -> None:
    trickle = [body(4, True)] * 100  # 4 bytes every 0.05 s: each chunk in time, the body never ends
    sent, took = run(reads_then_answers, trickle, gap_s=0.05, request_s=request_s, body_s=body_s)
    status, headers = start(sent)
    assert (status, headers[b"connection"]) == (408, b"close")
    assert error(sent) == {"kind": "body_timeout", "error": f"the request body did not arrive within {limit} s "
                           f"({setting}); the connection is closed"}
    assert limit <= took < limit + 0.3


def test_a_request_past_its_timeout_after_its_body_gets_503_timeout() -> None:
    async def slow(scope: Any, receive: Any, send: Any) -> None:
        await read_all(receive)
        assert scope["state"][DEADLINE_STATE_KEY] > 0
        await anyio.sleep(10)

    sent, took = run(slow, [body(10, False)], request_s=0.3)
    status, headers = start(sent)
    assert status == 503 and b"connection" not in headers  # the body was read: the connection can stay
    assert error(sent) == {"kind": "timeout", "error": "the request took longer than the request timeout of 0.3 s "
                           "(SDLGM_REQUEST_TIMEOUT_S: reading, parsing, queueing, inference and answering); retry "
                           "later or with a smaller batch"}
    assert 0.3 <= took < 0.6


def test_an_answer_before_the_body_ended_closes_the_connection() -> None:
    async def early(scope: Any, receive: Any, send: Any) -> None:
        await receive()  # the first part only
        await answer(send, 503)

    sent, _ = run(early, [body(10, True), body(10, False)])
    assert start(sent) == (503, {b"connection": b"close"})


def test_an_answer_already_begun_is_finished_past_the_deadline() -> None:
    async def slow_answer(scope: Any, receive: Any, send: Any) -> None:
        await read_all(receive)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await anyio.sleep(0.3)  # past the request's timeout, mid-answer
        await send({"type": "http.response.body", "body": b"{}"})

    drain = Drain(ANSWER_MARGIN_S + 0.1)
    sent, took = run(slow_answer, [body(1, False)], request_s=0.2, drain=drain, drain_after_s=0.15)
    assert [(m["type"], m.get("status", m.get("body"))) for m in sent] == [
        ("http.response.start", 200), ("http.response.body", b"{}")]
    assert 0.3 <= took < 0.6


def test_a_drain_pulls_in_the_deadline_of_a_request_in_flight_and_answers_503_unavailable() -> None:
    async def slow(scope: Any, receive: Any, send: Any) -> None:
        await read_all(receive)
        await anyio.sleep(10)

    drain = Drain(ANSWER_MARGIN_S + 0.3)  # answered 0.3 s after the drain begins
    sent, took = run(slow, [body(1, False)], request_s=10.0, drain=drain, drain_after_s=0.1)
    status, headers = start(sent)
    assert (status, headers[b"retry-after"], headers[b"connection"]) == (503, b"1", b"close")
    assert error(sent) == {"kind": "unavailable", "error": f"the service is stopping and the request did not finish "
                           f"within its drain of {ANSWER_MARGIN_S + 0.3} s (SDLGM_DRAIN_TIMEOUT_S); retry after 1 s"}
    assert 0.4 <= took < 0.7


def test_while_draining_every_answer_closes_its_connection() -> None:
    drain = Drain(8.0)

    async def main() -> None:
        drain.begin()

    anyio.run(main)
    sent, _ = run(reads_then_answers, [body(1, False)], drain=drain)
    assert start(sent) == (200, {b"connection": b"close"})


def test_a_client_gone_before_any_answer_counts_as_499_not_500() -> None:
    metrics = Metrics()
    messages = [body(5, True), {"type": "http.disconnect"}]

    async def gives_up(scope: Any, receive: Any, send: Any) -> None:
        while (await receive())["type"] == "http.request":
            pass  # RequestGuard returns without an answer when the client went away

    async def fails(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("a bug")

    async def main() -> None:
        async def receive() -> dict[str, Any]:
            return messages.pop(0)

        async def send(message: dict[str, Any]) -> None:
            pass

        await MetricsMiddleware(gives_up, metrics, routes=[])(dict(SCOPE), receive, send)
        with pytest.raises(RuntimeError):
            await MetricsMiddleware(fails, metrics, routes=[])(dict(SCOPE), receive, send)

    anyio.run(main)
    count = metrics.registry.get_sample_value
    assert count("sdlgm_requests_total", {"endpoint": "other", "model": "", "version": "", "status": "499"}) == 1
    assert count("sdlgm_requests_total", {"endpoint": "other", "model": "", "version": "", "status": "500"}) == 1
