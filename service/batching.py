"""Dynamic batching: concurrent requests to one model and one operation (encode, decode, predict) are
coalesced into one onnxruntime run, and each request gets its own rows of the result, in order.

One `Batcher` per model and operation owns a queue and one asyncio task (`serve`). The task takes the
oldest request, waits until SDLGM_BATCH_MAX_VECTORS vectors are queued or that request has waited
SDLGM_BATCH_MAX_DELAY_MS, takes the queued requests in order while they fit in SDLGM_BATCH_MAX_VECTORS (a
request is never split: one larger than that runs alone), and runs them as one batch in the batcher's own
thread: the operation on all rows, then each request's `finish` on its own rows, which builds its answer
off the event loop. Runs of one batcher are one at a time, so one thread of its own serves them: handed
each batch directly, it gives the batch back to the event loop with one `call_soon_threadsafe` (holds
released, requests woken), with less CPU and latency per batch than `run_in_executor` (its futures
chained across threads) or a hop through anyio's thread pool. Requests wait on asyncio futures with a
timer for their deadline rather than on anyio events in cancel scopes, which cost several times more. While a batch runs the next one queues, so with a delay of 0
batches still form under load. Requests are validated before they join the queue, and an error raised by
one request's `finish` goes to that request only.

`Scheduler` is what routes call: `run` admits the request's vectors (service.admission: 503 when they
do not fit), then queues them, or with SDLGM_BATCHING=false runs them alone as before (the reference the
benchmark compares against); `alone` runs work that cannot be coalesced (a stochastic code with its own
seed), admitted the same way. Both answer 503 at the request's deadline (service.deadline: the whole
request within SDLGM_REQUEST_TIMEOUT_S; from the call when a request has none); a request cancelled or
timed out while queued is dropped unrun. A reload that replaces a model retires its runtime (`retire`):
its batchers answer what they hold and end, and a request that chose it before the swap runs alone.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import anyio
import numpy as np
import numpy.typing as npt
from anyio.abc import TaskGroup

from bundle.runtime import F32, ModelRuntime
from service.admission import Capacity, Hold, overloaded
from service.inference import timeout_error
from service.metrics import Metrics
from service.settings import Settings

T = TypeVar("T")
Output = tuple[npt.NDArray[Any], ...]  # an operation's outputs, each with one row per input row
OPERATIONS = ("encode", "decode", "predict")


def operation(runtime: ModelRuntime, op: str) -> Callable[[F32], Output]:
    """The operation's rows -> outputs: encode (L_hat (B,), counts (B, K)), the deterministic code; decode
    (reconstructions (B, D),); predict (label probabilities (B, K), predicted counts (B,))."""
    if op == "encode":
        return runtime.encode
    if op == "decode":
        return lambda z: (runtime.decode(z),)
    return runtime.predict


@dataclass(eq=False, slots=True)
class _Item:
    """One request in a queue: its rows, what builds its answer from its rows of the outputs, its hold, and
    the future its request awaits: resolved by the batcher once its run is over, or, first, cancelled or
    failed with TimeoutError when its request stops waiting (the batcher then skips it if still queued)."""

    x: F32
    finish: Callable[[Output], Any]
    hold: Hold
    arrived: float
    done: asyncio.Future[None]
    result: Any = None
    error: BaseException | None = None

    @property
    def abandoned(self) -> bool:
        """Its request no longer waits (timed out or cancelled) and it was not answered."""
        return self.done.done()


def _resolve(future: asyncio.Future[None], error: BaseException | None = None) -> None:
    """Resolve the future unless it is already (its waiter cancelled it, or its timer came first)."""
    if not future.done():
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


class Batcher:
    """The queue of one model's operation and the task that runs it (`serve`)."""

    def __init__(self, run: Callable[[F32], Output], max_vectors: int, max_delay_s: float,
                 observe: Callable[[int, int], None]) -> None:
        self._run, self.max_vectors, self.max_delay_s, self._observe = run, max_vectors, max_delay_s, observe
        self._items: deque[_Item] = deque()
        self._queued = 0  # vectors in _items
        self._arrived: asyncio.Future[None] | None = None  # what `serve` awaits while it waits for requests
        self._closed = False

    def close(self) -> None:
        """No more requests will come (its model was replaced): serve the queued ones, then end `serve`."""
        self._closed = True
        self._wake()

    def put(self, item: _Item) -> None:
        self._items.append(item)
        self._queued += len(item.x)
        self._wake()

    def _wake(self) -> None:
        if self._arrived is not None:
            _resolve(self._arrived)

    async def _wait(self, timeout: float | None) -> None:
        """Until a request arrives or the batcher closes, or at most timeout seconds. asyncio's own future
        and timer: anyio's event and cancel scope cost several times more, per request."""
        loop = asyncio.get_running_loop()
        self._arrived = arrived = loop.create_future()
        timer = None if timeout is None else loop.call_later(timeout, _resolve, arrived)
        try:
            await arrived
        finally:
            self._arrived = None
            if timer is not None:
                timer.cancel()

    async def _collect(self) -> list[_Item]:
        """The next batch: the oldest request and those after it that fit, once the batch is full or the
        oldest has waited max_delay_s. Requests that timed out while queued are dropped; empty once closed
        with nothing queued."""
        while not self._items:
            if self._closed:
                return []
            await self._wait(None)
        deadline = self._items[0].arrived + self.max_delay_s
        loop = asyncio.get_running_loop()
        while not self._closed and self._queued < self.max_vectors and (left := deadline - loop.time()) > 0:
            await self._wait(left)
        return self._take()

    def _take(self) -> list[_Item]:
        """The oldest queued requests that fit in a batch; those that timed out while queued dropped."""
        batch: list[_Item] = []
        total = 0
        while self._items and (not batch or total + len(self._items[0].x) <= self.max_vectors):
            item = self._items.popleft()
            self._queued -= len(item.x)
            if item.abandoned:
                item.hold.release()
                continue
            batch.append(item)
            total += len(item.x)
        return batch

    def _execute(self, batch: list[_Item], loop: asyncio.AbstractEventLoop, finished: asyncio.Future[None]) -> None:
        """In the batcher's thread: the batch's run, then the batch handed back to the loop (`_answer`) in one
        call, whatever happened."""
        try:
            self._compute(batch)
        finally:
            loop.call_soon_threadsafe(self._answer, batch, finished)

    def _compute(self, batch: list[_Item]) -> None:
        """One run over every request's rows, then each request's finish on its rows."""
        x = batch[0].x if len(batch) == 1 else np.concatenate([item.x for item in batch])
        try:
            outputs = self._run(x)
        except Exception as exc:  # a failing run fails its requests (500), not the batcher
            for item in batch:
                item.error = exc
            return
        at = 0
        for item in batch:
            n = len(item.x)
            try:
                item.result = item.finish(tuple(out[at:at + n] for out in outputs))
            except Exception as exc:  # this request's answer only
                item.error = exc
            at += n

    def _answer(self, batch: list[_Item], finished: asyncio.Future[None]) -> None:
        """On the loop, once a batch's run is over: its holds given back, its requests woken, `serve` too."""
        for item in batch:
            item.hold.release()
            _resolve(item.done)
        _resolve(finished)
        self._observe(len(batch), sum(len(item.x) for item in batch))

    async def serve(self) -> None:
        """Run batches until cancelled, or closed and empty, one at a time. Cancelled, it first runs the batch
        started and those still queued to their end (shielded), so every queued request gets its answer and
        its hold back."""
        loop = asyncio.get_running_loop()
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sdlgm-batcher")
        try:
            while True:
                batch = await self._collect()
                if not batch:
                    if self._closed and not self._items:
                        return
                    continue
                finished = self._submit(thread, loop, batch)
                try:
                    await asyncio.shield(finished)  # a cancellation must not cancel `finished` itself
                except asyncio.CancelledError:  # the batch runs to its end, and so does what is queued
                    with anyio.CancelScope(shield=True):
                        await finished
                        while batch := self._take():
                            await self._submit(thread, loop, batch)
                    raise
        finally:
            thread.shutdown(wait=False)

    def _submit(self, thread: ThreadPoolExecutor, loop: asyncio.AbstractEventLoop,
                batch: list[_Item]) -> asyncio.Future[None]:
        """The batch handed to the thread; the future `_answer` resolves once it has run and been answered."""
        finished: asyncio.Future[None] = loop.create_future()
        thread.submit(self._execute, batch, loop, finished)
        return finished


class Scheduler:
    """How a request's inference runs: admitted against its model's capacity, then coalesced by the
    batcher of its model and operation (created on first use), or alone when batching is off."""

    def __init__(self, settings: Settings, metrics: Metrics, capacity: Capacity) -> None:
        self.batching = settings.batching
        self.max_vectors = settings.batch_max_vectors
        self.max_delay_s = settings.batch_max_delay_ms / 1000.0
        self.timeout_s = settings.request_timeout_s
        self.metrics, self.capacity = metrics, capacity
        self._batchers: dict[tuple[str, int, str], Batcher] = {}  # by model name, id(runtime), operation
        self._retired: weakref.WeakValueDictionary[int, ModelRuntime] = weakref.WeakValueDictionary()
        self._tasks: TaskGroup | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The batchers' tasks live inside this context (the app's lifespan)."""
        async with anyio.create_task_group() as tasks:
            self._tasks = tasks
            try:
                yield
            finally:
                self._tasks = None
                self._batchers.clear()
                tasks.cancel_scope.cancel()

    def retire(self, runtime: ModelRuntime) -> None:
        """The runtime is no longer served (a reload replaced it): its batchers answer what they hold and
        end, and a request that had chosen it before the swap runs alone on it."""
        self._retired[id(runtime)] = runtime
        for op in OPERATIONS:
            batcher = self._batchers.pop((runtime.name, id(runtime), op), None)
            if batcher is not None:
                batcher.close()

    def _is_retired(self, runtime: ModelRuntime) -> bool:
        return self._retired.get(id(runtime)) is runtime

    def _batcher(self, runtime: ModelRuntime, op: str) -> Batcher:
        key = (runtime.name, id(runtime), op)
        batcher = self._batchers.get(key)
        if batcher is None:
            if self._tasks is None:
                raise RuntimeError("the scheduler is not running (the app's lifespan has not started)")
            runs, sizes = self.metrics.model(runtime.name).coalesced(op)

            def observe(requests: int, vectors: int) -> None:
                runs.observe(requests)
                sizes.observe(vectors)

            batcher = self._batchers[key] = Batcher(operation(runtime, op), self.max_vectors, self.max_delay_s,
                                                    observe)
            self._tasks.start_soon(batcher.serve, name=f"batcher {runtime.name} {op}")
        return batcher

    def admit(self, hold: Hold | None, model: str, n: int) -> Hold:
        """The request's hold resized to its n vectors; 503 (overloaded) when they do not fit."""
        if hold is None or hold.model != model:
            hold = Hold(self.capacity, model, 0)
        if not hold.resize(n):
            self.metrics.model(model).shed.inc()
            raise overloaded(model, n, self.capacity.used(model) - hold.vectors, self.capacity.limit)
        return hold

    def _left(self, deadline: float | None) -> float:
        """Seconds to the request's deadline, or the whole timeout from now when it has none."""
        return self.timeout_s if deadline is None else deadline - anyio.current_time()

    def _deadline(self, deadline: float | None, now: float) -> float:
        """The request's deadline on the loop's clock (anyio's on asyncio), or the whole timeout from now."""
        return now + self.timeout_s if deadline is None else deadline

    async def run(self, hold: Hold | None, runtime: ModelRuntime, op: str, x: F32, finish: Callable[[Output], T],
                  deadline: float | None = None) -> T:
        """finish(the operation's outputs for the rows x), the rows coalesced with other requests' when
        batching is on."""
        held = self.admit(hold, runtime.name, len(x))
        if not self.batching or self._is_retired(runtime):
            return await self.alone(held, runtime, len(x), lambda: finish(operation(runtime, op)(x)), deadline)
        loop = asyncio.get_running_loop()
        now = loop.time()
        item = _Item(x, finish, held, now, loop.create_future())
        held.handed = True
        self._batcher(runtime, op).put(item)
        # The deadline as a timer on the future, not a cancel scope: a cancellation from outside (the
        # request's middleware) cancels the future all the same, and a done future is skipped if queued.
        timer = loop.call_at(self._deadline(deadline, now), _resolve, item.done, TimeoutError())
        try:
            await item.done
        except TimeoutError as exc:
            raise timeout_error(self.timeout_s) from exc
        finally:
            timer.cancel()
        if item.error is not None:
            raise item.error
        return cast(T, item.result)

    async def alone(self, hold: Hold | None, runtime: ModelRuntime, n: int, work: Callable[[], T],
                    deadline: float | None = None) -> T:
        """work() in a worker thread, never coalesced, its n vectors admitted as a batch's are; past the
        deadline the answer is 503 at once and the thread finishes on its own."""
        held = self.admit(hold, runtime.name, n)
        try:
            with anyio.fail_after(self._left(deadline)):
                return await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
        except TimeoutError as exc:
            raise timeout_error(self.timeout_s) from exc
        finally:
            held.release()


@dataclass(frozen=True)
class Inference:
    """The scheduler bound to one request, what it holds from the ShedGuard and its deadline (service.deadline;
    the routes' dependency)."""

    scheduler: Scheduler
    hold: Hold | None
    deadline: float | None = None

    async def run(self, runtime: ModelRuntime, op: str, x: F32, finish: Callable[[Output], T]) -> T:
        return await self.scheduler.run(self.hold, runtime, op, x, finish, self.deadline)

    async def alone(self, runtime: ModelRuntime, n: int, work: Callable[[], T]) -> T:
        return await self.scheduler.alone(self.hold, runtime, n, work, self.deadline)
