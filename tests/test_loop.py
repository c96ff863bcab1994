"""The one training loop: batch orders, schedules, clipping, the run's metrics and checkpoints, and the
exact resume (N steps = N/2 steps, stop, resume, N/2 steps: identical weights) for both batch orders."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from training.loop import Batches, Loop, LoopConfig, RunHooks, Schedule, resume, run, steps_per_epoch

ROWS = 37  # not a multiple of the batch size: the tail of a pass matters


def _problem(cfg: LoopConfig) -> tuple[Loop, nn.Module]:
    """A seeded linear model on fixed data whose loss also draws from torch's global RNG (as the SDLGM's
    Gumbel noise does), so that an inexact resume of that RNG shows in the weights."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(ROWS, 4, generator=g), torch.randn(ROWS, 1, generator=g)

    def step_loss(idx: torch.Tensor, step: int) -> dict[str, Any]:
        noise = 0.1 * torch.randn(len(idx), 1)
        err = (net(x[idx]) + noise - y[idx]) ** 2
        return {"loss": err.mean(), "err": err.squeeze(1)}

    return Loop(cfg, net.parameters(), ROWS, step_loss, [net]), net


@pytest.mark.parametrize("order, drop_last", [("permutation", True), ("permutation", False), ("replacement", True)])
@pytest.mark.parametrize("schedule", [Schedule(), Schedule("cosine", lr_final=1e-4), Schedule("step", at=7)])
def test_stop_and_resume_gives_the_same_weights(tmp_path: Path, order: Any, drop_last: bool,
                                                schedule: Schedule) -> None:
    cfg = LoopConfig(steps=20, batch_size=5, lr=1e-2, optimizer="adamw", weight_decay=0.1, schedule=schedule,
                     clip_grad_norm=1.0, order=order, drop_last=drop_last, seed=3)
    full, full_net = _problem(cfg)
    run(full)
    half, half_net = _problem(cfg)
    hooks = RunHooks(checkpoint=tmp_path / "ck.pt", checkpoint_every=100, modules={"net": half_net})
    run(half, hooks, stop_after=10)
    assert half.step == 10 and (tmp_path / "ck.pt").exists()  # checkpointed at the stop
    torch.manual_seed(123)  # a new process: nothing of the first half's state but the file
    resumed, resumed_net = _problem(cfg)
    resume(tmp_path / "ck.pt", resumed, {"net": resumed_net})
    assert resumed.step == 10
    run(resumed, hooks)
    for (k, a), b in zip(full_net.state_dict().items(), resumed_net.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    assert full.optimizer.param_groups[0]["lr"] == resumed.optimizer.param_groups[0]["lr"]


def test_a_permutation_pass_visits_every_row_once() -> None:
    keep = Batches(ROWS, 5, "permutation", drop_last=False, seed=0)
    passes = [torch.cat([keep.next() for _ in range(steps_per_epoch(ROWS, 5))]) for _ in range(2)]
    assert [sorted(p.tolist()) for p in passes] == [list(range(ROWS))] * 2
    assert not torch.equal(passes[0], passes[1])  # a fresh permutation per pass
    drop = Batches(ROWS, 5, "permutation", drop_last=True, seed=0)
    batches = [drop.next() for _ in range(2 * steps_per_epoch(ROWS, 5, drop_last=True))]
    assert all(len(b) == 5 for b in batches)
    assert len(set(torch.cat(batches[:7]).tolist())) == 35  # 7 full batches of one pass, 2 rows left out


def test_draws_with_replacement_are_seeded_and_repeat_rows() -> None:
    a, b = Batches(10, 50, "replacement", True, seed=4), Batches(10, 50, "replacement", True, seed=4)
    first = a.next()
    assert torch.equal(first, b.next()) and len(set(first.tolist())) <= 10 < len(first)
    assert int(first.min()) >= 0 and int(first.max()) < 10


def test_schedules() -> None:
    cos = Schedule("cosine", lr_final=1e-4)
    assert cos.lr(1e-3, 0, 100) == pytest.approx(1e-3) and cos.lr(1e-3, 100, 100) == pytest.approx(1e-4)
    assert cos.lr(1e-3, 50, 100) == pytest.approx(0.5 * (1e-3 + 1e-4))
    assert cos.lr(1e-3, 150, 100) == pytest.approx(1e-4)  # past the end it stays at lr_final
    step = Schedule("step", at=30, divisor=3)
    assert [step.lr(0.003, s, 100) for s in (0, 29, 30, 99)] == [0.003, 0.003, 0.003 / 3, 0.003 / 3]
    assert Schedule().lr(0.01, 77, 100) == 0.01
    with pytest.raises(ValueError, match="lr_final"):
        LoopConfig(steps=1, batch_size=1, schedule=Schedule("cosine"))


def test_the_optimizer_steps_at_the_scheduled_rate() -> None:
    loop, _ = _problem(LoopConfig(steps=10, batch_size=5, lr=0.01, schedule=Schedule("step", at=4, divisor=4)))
    rates = []
    for _ in range(10):
        rates.append(loop.optimizer.param_groups[0]["lr"])
        loop.one_step()
    assert rates == [0.01] * 4 + [0.0025] * 6


def test_gradients_are_clipped_to_the_norm() -> None:
    loop, net = _problem(LoopConfig(steps=1, batch_size=ROWS, lr=0.0, clip_grad_norm=1e-3))
    loop.one_step()
    norm = math.sqrt(sum(float((p.grad**2).sum()) for p in net.parameters() if p.grad is not None))
    assert norm == pytest.approx(1e-3, rel=1e-4)  # the raw gradient is far larger
    raw, raw_net = _problem(LoopConfig(steps=1, batch_size=ROWS, lr=0.0))
    raw.one_step()
    assert math.sqrt(sum(float((p.grad**2).sum()) for p in raw_net.parameters() if p.grad is not None)) > 0.1


def test_run_writes_metrics_calls_the_evaluation_and_checkpoints(tmp_path: Path) -> None:
    loop, net = _problem(LoopConfig(steps=7, batch_size=5))
    seen: list[int] = []
    hooks = RunHooks(checkpoint=tmp_path / "ck.pt", checkpoint_every=3, modules={"net": net},
                     extra={"note": "kept"}, metrics=tmp_path / "m.jsonl", eval_every=3,
                     evaluate=lambda step: seen.append(step) or {"score": step}, record=lambda step: {"at": step})
    run(loop, hooks)
    lines = [json.loads(x) for x in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [(r["step"], r["split"]) for r in lines] == [(3, "train"), (3, "valid"), (6, "train"), (6, "valid"),
                                                       (7, "train"), (7, "valid")]
    assert seen == [2, 5, 6] and lines[1]["score"] == 2 and lines[0]["at"] == 2
    assert {"loss", "err", "seconds"} <= set(lines[0])
    ck = torch.load(tmp_path / "ck.pt", weights_only=False)
    assert ck["step"] == 7 and ck["note"] == "kept" and set(ck["modules"]) == {"net"}


def test_the_steps_time_is_summed_across_a_resume(tmp_path: Path) -> None:
    cfg = LoopConfig(steps=20, batch_size=5, seed=3)
    half, net = _problem(cfg)
    hooks = RunHooks(checkpoint=tmp_path / "ck.pt", checkpoint_every=100, modules={"net": net},
                     metrics=tmp_path / "m.jsonl", eval_every=10)
    run(half, hooks, stop_after=10)
    first = half.seconds
    assert half.timed_steps == 10 and first > 0
    resumed, resumed_net = _problem(cfg)
    resume(tmp_path / "ck.pt", resumed, {"net": resumed_net})
    assert (resumed.seconds, resumed.timed_steps) == (first, 10)
    run(resumed, dataclasses.replace(hooks, modules={"net": resumed_net}))
    lines = [json.loads(x) for x in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [(r["step"], r["timed_steps"]) for r in lines] == [(10, 10), (20, 20)]
    assert lines[0]["seconds"] == first < lines[1]["seconds"] == resumed.seconds


def test_a_checkpoint_written_before_timing_resumes_with_no_timed_steps(tmp_path: Path) -> None:
    cfg = LoopConfig(steps=20, batch_size=5, seed=3)
    loop, net = _problem(cfg)
    run(loop, RunHooks(checkpoint=tmp_path / "ck.pt", checkpoint_every=100, modules={"net": net}), stop_after=10)
    ck = torch.load(tmp_path / "ck.pt", weights_only=False)
    del ck["seconds"], ck["timed_steps"]
    torch.save(ck, tmp_path / "ck.pt")
    resumed, resumed_net = _problem(cfg)
    resume(tmp_path / "ck.pt", resumed, {"net": resumed_net})
    run(resumed)
    assert resumed.step == 20 and resumed.timed_steps == 10  # only the steps it timed itself
