"""The time limits of one request, as a pure ASGI middleware (docs/serving.md, "Time limits and slow clients").

From the moment its head has arrived (uvicorn starts the app then), a request has
- SDLGM_BODY_TIMEOUT_S (or SDLGM_REQUEST_TIMEOUT_S if shorter) to send its body: past it the answer is
  408 `body_timeout` and the connection is closed (a stalled or trickled body);
- SDLGM_REQUEST_TIMEOUT_S for all of it: reading the body, parsing, queueing, inference and building the
  answer: past it 503 `timeout`;
- and, once the service drains (service.drain), no more than the drain's deadline: 503 `unavailable`
  with Retry-After.
One anyio cancel scope carries the deadline: the body's while the body is read, the whole request's once
it has ended. The app's work is cancelled where it waits (a thread doing it is abandoned, a queued batch
item dropped), and this middleware answers in the service's error shape; an answer already begun is
finished, whatever the time. The deadline is also in the scope state (DEADLINE_STATE_KEY) for the scheduler, whose wait for a
batch answers the same 503.

Any answer given before the request's body has been read to its end, and every answer while the service
drains, carries `Connection: close`: the rest of such a body is never read, and a client must not send
another request on a connection that is closing.
"""

from __future__ import annotations

import math

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.drain import Drain
from service.errors import ServiceError, error_response
from service.inference import timeout_error
from service.metrics import Metrics

DEADLINE_STATE_KEY = "sdlgm_deadline"
CLOSE = (b"connection", b"close")
RETRY_AFTER_S = 1


def body_timeout(limit_s: float, setting: str) -> ServiceError:
    return ServiceError(408, "body_timeout", f"the request body did not arrive within {limit_s} s ({setting}); "
                        "the connection is closed")


def stopping(timeout_s: float) -> ServiceError:
    return ServiceError(503, "unavailable", f"the service is stopping and the request did not finish within "
                        f"its drain of {timeout_s} s (SDLGM_DRAIN_TIMEOUT_S); retry after {RETRY_AFTER_S} s",
                        headers={"Retry-After": str(RETRY_AFTER_S)})


class RequestDeadline:
    """408 past the body's time limit, 503 past the request's or the drain's; `Connection: close` on answers
    given before the body's end or while draining."""

    def __init__(self, app: ASGIApp, metrics: Metrics, drain: Drain, request_timeout_s: float,
                 body_timeout_s: float) -> None:
        self.app, self.metrics, self.drain = app, metrics, drain
        self.request_timeout_s, self.body_timeout_s = request_timeout_s, body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = anyio.current_time()
        request_deadline = start + self.request_timeout_s
        body_limit = min(self.body_timeout_s, self.request_timeout_s)
        body_ended = False
        answered = False
        scope.setdefault("state", {})[DEADLINE_STATE_KEY] = self.drain.bound(request_deadline)

        with self.drain.scope(start + body_limit) as deadline:

            async def read() -> Message:
                nonlocal body_ended
                message = await receive()
                if not body_ended and not (message["type"] == "http.request" and message.get("more_body", False)):
                    body_ended = True  # the end of the body, or the client gone
                    deadline.deadline = self.drain.bound(request_deadline)
                return message

            async def write(message: Message) -> None:
                nonlocal answered
                if message["type"] == "http.response.start":
                    answered = True
                    self.drain.release(deadline)  # an answer begun is finished, whatever the time
                    deadline.deadline = math.inf
                    if (not body_ended or self.drain.draining) and CLOSE not in message.get("headers", []):
                        message = {**message, "headers": [*message.get("headers", []), CLOSE]}
                if deadline.cancel_called:  # a deadline met just now must not cut the answer
                    with anyio.CancelScope(shield=True):
                        await send(message)
                else:  # nothing cancels it any more: its deadline is off and the drain has let go of it
                    await send(message)

            await self.app(scope, read, write)
        if not deadline.cancelled_caught or answered:
            return
        if self.drain.by_drain(deadline.deadline):
            exc = stopping(self.drain.timeout_s)
        elif not body_ended:
            setting = "SDLGM_BODY_TIMEOUT_S" if self.body_timeout_s <= self.request_timeout_s else \
                "SDLGM_REQUEST_TIMEOUT_S"
            exc = body_timeout(body_limit, setting)
        else:
            exc = timeout_error(self.request_timeout_s)
        response = error_response(self.metrics, exc.status, exc.kind, exc.message, headers=exc.headers)
        if not body_ended or self.drain.draining:
            response.headers["connection"] = "close"
        await response(scope, receive, send)
