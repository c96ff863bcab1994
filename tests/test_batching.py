"""The scheduler (service.batching) and the capacity it admits against (service.admission), without an app:
a fake runtime records every run, so coalescing, the order of the split results, the batch bound, errors
that stay with their request, timeouts, shedding and the Content-Length estimates are checked exactly."""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import numpy as np
import pytest
from conftest import settings_of

from bundle.formats import CodeSpace
from service.admission import Capacity, estimate
from service.batching import Output, Scheduler
from service.errors import ServiceError
from service.metrics import Metrics

D = 3


class FakeRuntime:
    """encode gives (row sums, rows * 2) and records the size of every run; `sleep_s` per run."""

    name = "m"
    manifest = SimpleNamespace(fingerprint="f" * 64, D=D)

    def __init__(self, sleep_s: float = 0.0, fail: bool = False) -> None:
        self.runs: list[int] = []
        self.sleep_s, self.fail = sleep_s, fail

    def encode(self, x: np.ndarray) -> Output:
        self.runs.append(len(x))
        time.sleep(self.sleep_s)
        if self.fail:
            raise RuntimeError("the graph failed")
        return x.sum(axis=1), x * 2


def rows(n: int, start: float) -> np.ndarray:
    return (start + np.arange(n * D, dtype=np.float32)).reshape(n, D)


def scheduler(tmp_path: Path, limit: int = 1000, **settings: Any) -> tuple[Scheduler, Capacity, Metrics]:
    metrics = Metrics()
    capacity = Capacity(limit, metrics)
    values = {"models_dir": tmp_path, "max_batch": min(limit, 1024), "queue_max_vectors": limit, **settings}
    return Scheduler(settings_of(**values), metrics, capacity), capacity, metrics


def gather(s: Scheduler, calls: list[Callable[[], Awaitable[Any]]], stagger_s: float = 0.0) -> list[Any]:
    """Run the calls concurrently inside the scheduler; each result, or the exception it raised."""
    out: list[Any] = [None] * len(calls)

    async def one(i: int) -> None:
        try:
            out[i] = await calls[i]()
        except Exception as exc:
            out[i] = exc

    async def main() -> None:
        async with s.running(), anyio.create_task_group() as tg:
            for i in range(len(calls)):
                tg.start_soon(one, i)
                await anyio.sleep(stagger_s)

    anyio.run(main)
    return out


def encode(s: Scheduler, rt: FakeRuntime, x: np.ndarray, finish: Callable[[Output], Any] = lambda o: o
           ) -> Callable[[], Awaitable[Any]]:
    return lambda: s.run(None, rt, "encode", x, finish)  # type: ignore[arg-type]


def test_concurrent_requests_share_one_run_and_each_gets_its_own_rows_in_order(tmp_path: Path) -> None:
    s, capacity, metrics = scheduler(tmp_path, batch_max_delay_ms=100)
    rt = FakeRuntime()
    xs = [rows(n, 100 * i) for i, n in enumerate([1, 2, 3, 1, 2])]
    out = gather(s, [encode(s, rt, x) for x in xs])
    assert rt.runs == [9]
    for x, (sums, doubled) in zip(xs, out, strict=True):
        assert np.array_equal(sums, x.sum(axis=1)) and np.array_equal(doubled, x * 2)
    assert capacity.used("m") == 0
    assert metrics.registry.get_sample_value("sdlgm_coalesced_requests_sum", {"model": "m", "version": "", "operation": "encode"}) == 5
    assert metrics.registry.get_sample_value("sdlgm_coalesced_batch_size_sum", {"model": "m", "version": "", "operation": "encode"}) == 9


def test_a_batch_holds_at_most_max_vectors_and_a_larger_request_runs_alone_unsplit(tmp_path: Path) -> None:
    s, _, _ = scheduler(tmp_path, batch_max_vectors=4, batch_max_delay_ms=100)
    rt = FakeRuntime()
    xs = [rows(n, 10 * i) for i, n in enumerate([3, 3, 1, 5])]
    out = gather(s, [encode(s, rt, x) for x in xs])
    assert rt.runs == [3, 4, 5]  # in arrival order: [3], [3, 1] (3 + 3 > 4), [5] alone
    assert all(np.array_equal(o[1], x * 2) for x, o in zip(xs, out, strict=True))


def test_every_run_of_a_batcher_is_in_its_own_thread_off_the_event_loop(tmp_path: Path) -> None:
    s, _, _ = scheduler(tmp_path, batch_max_delay_ms=20)
    rt = FakeRuntime()
    threads: list[str] = []
    loop_thread: list[str] = []

    def finish(o: Output) -> Output:
        threads.append(threading.current_thread().name)
        return o

    async def first() -> Any:
        loop_thread.append(threading.current_thread().name)
        return await s.run(None, rt, "encode", rows(1, 0), finish)  # type: ignore[arg-type]

    async def later() -> Any:
        await anyio.sleep(0.2)  # a second batch
        return await s.run(None, rt, "encode", rows(2, 5), finish)  # type: ignore[arg-type]

    gather(s, [first, later])
    assert rt.runs == [1, 2] and len(set(threads)) == 1 and threads[0].startswith("sdlgm-batcher")
    assert threads[0] != loop_thread[0]


def test_an_error_building_one_answer_stays_with_its_request(tmp_path: Path) -> None:
    s, capacity, _ = scheduler(tmp_path, batch_max_delay_ms=100)
    rt = FakeRuntime()

    def bad(_: Output) -> Any:
        raise ServiceError(400, "invalid_input", "this one only")

    xs = [rows(2, 0), rows(1, 50), rows(2, 90)]
    out = gather(s, [encode(s, rt, xs[0]), encode(s, rt, xs[1], bad), encode(s, rt, xs[2])])
    assert rt.runs == [5]
    assert isinstance(out[1], ServiceError) and out[1].message == "this one only"
    assert np.array_equal(out[0][1], xs[0] * 2) and np.array_equal(out[2][1], xs[2] * 2)
    assert capacity.used("m") == 0


def test_a_failing_run_fails_its_requests_and_the_batcher_serves_on(tmp_path: Path) -> None:
    s, capacity, _ = scheduler(tmp_path, batch_max_delay_ms=50)
    rt = FakeRuntime(fail=True)
    after: list[Any] = []

    async def then_ok() -> Any:
        await anyio.sleep(0.3)  # after the failed batch
        rt.fail = False
        after.append(await s.run(None, rt, "encode", rows(1, 7), lambda o: o))  # type: ignore[arg-type]

    out = gather(s, [encode(s, rt, rows(1, 0)), encode(s, rt, rows(2, 3)), then_ok])
    assert [str(e) for e in out[:2]] == ["the graph failed"] * 2
    assert rt.runs == [3, 1] and np.array_equal(after[0][1], rows(1, 7) * 2)
    assert capacity.used("m") == 0


def test_a_retired_runtime_answers_what_its_batcher_holds_and_a_late_request_runs_alone(tmp_path: Path) -> None:
    s, capacity, _ = scheduler(tmp_path, batch_max_delay_ms=1000)
    old, new = FakeRuntime(), FakeRuntime()  # one model's name and fingerprint: a reload of the same graphs
    queued = [rows(1, 0), rows(1, 10), rows(1, 20)]

    async def swap_then_more() -> list[Any]:
        await anyio.sleep(0.02)  # the three are queued on old's batcher, waiting for company
        s.retire(old)  # a reload swapped new in; a request that chose old before it still comes
        late = await s.run(None, old, "encode", rows(1, 30), lambda o: o)  # type: ignore[arg-type]
        with anyio.fail_after(5):
            after = await gather_in(s, [encode(s, new, rows(1, 40)), encode(s, new, rows(1, 50))])
        return [late, *after]

    started, answered = time.monotonic(), []

    def timed(x: np.ndarray) -> Callable[[], Awaitable[Any]]:
        async def call() -> Any:
            result = await encode(s, old, x)()
            answered.append(time.monotonic() - started)
            return result
        return call

    out = gather(s, [*(timed(x) for x in queued), swap_then_more])
    assert sorted(old.runs) == [1, 3]  # the queued three coalesced, the late one alone
    assert max(answered) < 0.9, answered  # a retired batcher does not wait out its 1 s delay for company
    assert new.runs == [2]  # new's own batcher
    for x, (_, doubled) in zip(queued, out[:3], strict=True):
        assert np.array_equal(doubled, x * 2)
    assert [np.array_equal(o[1], rows(1, v) * 2) for o, v in zip(out[3], (30, 40, 50), strict=True)] == [True] * 3
    assert capacity.used("m") == 0


async def gather_in(s: Scheduler, calls: list[Callable[[], Awaitable[Any]]]) -> list[Any]:
    """The calls run concurrently inside a running scheduler; their results in order."""
    out: list[Any] = [None] * len(calls)

    async def one(i: int) -> None:
        out[i] = await calls[i]()

    async with anyio.create_task_group() as tg:
        for i in range(len(calls)):
            tg.start_soon(one, i)
    return out


def test_a_lone_request_waits_the_delay_for_company_and_no_longer(tmp_path: Path) -> None:
    s, _, _ = scheduler(tmp_path, batch_max_delay_ms=150)
    rt = FakeRuntime()
    started = time.monotonic()
    gather(s, [encode(s, rt, rows(1, 0))])
    took = time.monotonic() - started
    assert 0.15 <= took < 1.0 and rt.runs == [1]


def test_a_request_past_the_timeout_gets_503_and_a_queued_one_is_dropped_unrun(tmp_path: Path) -> None:
    s, capacity, _ = scheduler(tmp_path, request_timeout_s=0.1, batch_max_vectors=1)
    rt = FakeRuntime(sleep_s=0.3)  # the first run outlasts both requests' timeout
    out = gather(s, [encode(s, rt, rows(1, 0)), encode(s, rt, rows(1, 5))], stagger_s=0.02)
    assert [(e.status, e.kind) for e in out] == [(503, "timeout")] * 2
    assert rt.runs == [1]  # the second timed out in the queue and never ran
    assert capacity.used("m") == 0  # the first's vectors came back when its run ended


TIMEOUT_MESSAGE = ("the request took longer than the request timeout of 10.0 s (SDLGM_REQUEST_TIMEOUT_S: reading, "
                   "parsing, queueing, inference and answering); retry later or with a smaller batch")


@pytest.mark.parametrize("batching", [True, False])
def test_the_request_s_own_deadline_bounds_its_wait_and_a_cancelled_one_is_dropped_unrun(tmp_path: Path,
                                                                                        batching: bool) -> None:
    s, capacity, _ = scheduler(tmp_path, batching=batching, batch_max_vectors=1)  # the timeout: 10 s
    rt = FakeRuntime(sleep_s=0.4)
    out: list[Any] = []

    async def main() -> None:
        async with s.running():
            async def first() -> None:
                try:
                    await s.run(None, rt, "encode", rows(1, 0), lambda o: o,  # type: ignore[arg-type]
                                deadline=anyio.current_time() + 0.1)
                except ServiceError as exc:
                    out.append((exc, anyio.current_time() - started))

            started = anyio.current_time()
            async with anyio.create_task_group() as tg:
                tg.start_soon(first)
                await anyio.sleep(0.02)
                with anyio.move_on_after(0.05):  # a request cancelled from outside (its middleware's deadline)
                    await s.run(None, rt, "encode", rows(1, 5), lambda o: o)  # type: ignore[arg-type]
            await anyio.sleep(0.5)  # the first run ends; a queued second would run now

    anyio.run(main)
    [(exc, took)] = out
    assert (exc.status, exc.kind, exc.message) == (503, "timeout", TIMEOUT_MESSAGE)
    assert took < 0.35  # at its deadline, not when the run ends
    assert rt.runs == ([1] if batching else [1, 1])  # queued and cancelled: never run (alone, it was running)
    assert capacity.used("m") == 0


def test_requests_over_the_capacity_are_shed_with_retry_after(tmp_path: Path) -> None:
    s, capacity, metrics = scheduler(tmp_path, limit=10, batch_max_delay_ms=200)
    rt = FakeRuntime()
    out = gather(s, [encode(s, rt, rows(6, 0)), encode(s, rt, rows(5, 0)), encode(s, rt, rows(4, 0))],
                 stagger_s=0.01)
    shed = out[1]
    assert isinstance(shed, ServiceError)
    assert (shed.status, shed.kind, shed.headers) == (503, "overloaded", {"Retry-After": "1"})
    assert shed.message == ("model 'm' cannot queue 5 more vectors: 6 of its 10 are queued "
                            "(SDLGM_QUEUE_MAX_VECTORS); retry after 1 s")
    assert rt.runs == [10]  # the 6 and the 4 that still fitted, together
    assert metrics.registry.get_sample_value("sdlgm_shed_requests_total", {"model": "m", "version": ""}) == 1
    assert capacity.used("m") == 0
    assert metrics.registry.get_sample_value("sdlgm_queue_vectors", {"model": "m", "version": ""}) == 0


def test_without_batching_every_request_runs_alone(tmp_path: Path) -> None:
    s, capacity, _ = scheduler(tmp_path, batching=False, batch_max_delay_ms=100)
    rt = FakeRuntime()
    xs = [rows(n, 0) for n in (2, 1, 3)]
    out = gather(s, [encode(s, rt, x) for x in xs])
    assert sorted(rt.runs) == [1, 2, 3]
    assert all(np.array_equal(o[1], x * 2) for x, o in zip(xs, out, strict=True))
    assert capacity.used("m") == 0


def test_holds_grow_only_within_the_capacity_and_give_back_once(tmp_path: Path) -> None:
    capacity = Capacity(8, Metrics())
    a = capacity.hold("m", 5)
    assert a is not None and capacity.hold("m", 4) is None and capacity.hold("other", 8) is not None
    assert a.resize(8) and capacity.used("m") == 8
    assert not a.resize(9) and a.vectors == 8  # refused growth changes nothing
    assert a.resize(2) and capacity.used("m") == 2
    a.release()
    a.release()
    assert capacity.used("m") == 0


@pytest.mark.parametrize(("operation", "binary", "payload", "fmt", "want"), [
    ("encode", True, 4 * 80 * 64, "v1", 64),  # binary rows: exact
    ("encode", True, 10, "v1", 1),  # at least one
    ("encode", False, 16 * 80 * 10 + 15, "v1", 10),  # JSON: 16 bytes a value
    ("predict", False, 16 * 80 * 3, "v1", 3),
    ("decode", True, 3 * 40, "enum", 40),  # enum records of 3 bytes: exact
    ("decode", True, 1000, "v1", 31),  # variable-length codes: one a 32 bytes
    ("decode", False, 10_000, "v1", 312),
    ("decode", False, 20, "v1", 1),
])
def test_the_estimate_of_a_body_s_vectors(operation: str, binary: bool, payload: int, fmt: str, want: int) -> None:
    manifest = SimpleNamespace(D=80, code_space=CodeSpace(K=64, L0=4))
    assert estimate(operation, binary, payload, manifest, fmt) == want  # type: ignore[arg-type]
