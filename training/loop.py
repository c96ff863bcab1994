"""The one training loop that every model kind and every benchmark runs.

A Loop owns the optimizer (Adam or AdamW), the learning-rate schedule (constant, cosine to lr_final, or
a step down by a divisor), optional gradient clipping and the batch order, and makes one step at a time:
    next row indices -> loss terms = step_loss(rows, step) -> backward on terms["loss"] -> update.
`run` drives a Loop for a whole run: a tqdm progress bar, metrics as JSON lines, an evaluation hook, and
checkpoints from which `resume` continues exactly (the model, the optimizer, the step, torch's global RNG
and the batch order's generator, permutation and cursor all travel in the file, with the summed time of
the steps taken: the metrics' `seconds` over `timed_steps`).

Batch orders, each from its own seeded torch.Generator (so that the model's own noise, drawn from the
global RNG, is untouched by it):
  permutation  a fresh permutation of the rows per pass, cut into batches; with drop_last a pass ends
               when the next batch would not fit (every batch is full), else its short tail is a batch
  replacement  each batch drawn uniformly with replacement
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import torch
from torch import nn
from tqdm import tqdm

Order = Literal["permutation", "replacement"]
StepLoss = Callable[[torch.Tensor, int], Mapping[str, torch.Tensor]]  # (row indices, step) -> terms


@dataclass(frozen=True)
class Schedule:
    """The learning rate at step s of T: constant; cosine from lr to lr_final; step: lr / divisor from
    step `at` on."""

    kind: Literal["constant", "cosine", "step"] = "constant"
    lr_final: float | None = None
    at: int | None = None
    divisor: float = 3.0

    def lr(self, lr: float, step: int, steps: int) -> float:
        if self.kind == "cosine":
            assert self.lr_final is not None
            ratio = self.lr_final / lr
            return lr * (ratio + (1 - ratio) * 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps)))
        if self.kind == "step":
            assert self.at is not None
            return lr / self.divisor if step >= self.at else lr
        return lr


@dataclass(frozen=True)
class LoopConfig:
    steps: int  # optimizer steps of the whole run
    batch_size: int
    lr: float = 1e-3
    optimizer: Literal["adam", "adamw"] = "adam"
    weight_decay: float = 0.0  # AdamW's decoupled decay; Adam's L2 term
    schedule: Schedule = Schedule()
    clip_grad_norm: float | None = None  # clip the gradients' total 2-norm to this
    order: Order = "permutation"
    drop_last: bool = True
    seed: int = 0  # the batch order's generator

    def __post_init__(self) -> None:
        if self.schedule.kind == "cosine" and self.schedule.lr_final is None:
            raise ValueError("a cosine schedule needs lr_final")
        if self.schedule.kind == "step" and self.schedule.at is None:
            raise ValueError("a step schedule needs the step `at` from which the rate is divided")


def steps_per_epoch(rows: int, batch_size: int, drop_last: bool = False) -> int:
    """Batches in one pass over the rows (a permutation order)."""
    return rows // batch_size if drop_last else math.ceil(rows / batch_size)


class Batches:
    """The batch order (see the module docstring); its state is saved for an exact resume."""

    def __init__(self, rows: int, size: int, order: Order, drop_last: bool, seed: int) -> None:
        self.rows, self.size, self.order, self.drop_last = rows, size, order, drop_last
        self.generator = torch.Generator().manual_seed(seed)
        self.perm = torch.randperm(rows, generator=self.generator) if order == "permutation" else None
        self.cursor = 0

    def next(self) -> torch.Tensor:
        if self.order == "replacement":
            return torch.randint(self.rows, (self.size,), generator=self.generator)
        assert self.perm is not None
        end = self.cursor + self.size
        if self.cursor >= self.rows or (self.drop_last and end > self.rows):
            self.perm, self.cursor = torch.randperm(self.rows, generator=self.generator), 0
        idx = self.perm[self.cursor: self.cursor + self.size]
        self.cursor += self.size
        return idx

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "perm": self.perm, "cursor": self.cursor}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.perm, self.cursor = state["perm"], int(state["cursor"])


class Loop:
    """One optimizer step at a time over `params`; `modules` are put in training mode before each step."""

    def __init__(self, cfg: LoopConfig, params: Iterable[torch.Tensor], rows: int, step_loss: StepLoss,
                 modules: Sequence[nn.Module] = ()) -> None:
        self.cfg = cfg
        self.params = list(params)
        self.step_loss = step_loss
        self.modules = list(modules)
        self.optimizer: torch.optim.Optimizer
        if cfg.optimizer == "adamw":
            self.optimizer = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        else:
            self.optimizer = torch.optim.Adam(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.batches = Batches(rows, cfg.batch_size, cfg.order, cfg.drop_last, cfg.seed)
        self.step = 0  # steps done
        self.seconds = 0.0  # wall time of the timed steps, summed over every run and resume
        self.timed_steps = 0  # steps whose time `seconds` holds (a checkpoint older than the timing has fewer)
        self._set_lr()

    def _set_lr(self) -> None:
        """The optimizer's rate for the next step (what a checkpoint of the optimizer then records)."""
        lr = self.cfg.schedule.lr(self.cfg.lr, self.step, self.cfg.steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def one_step(self) -> dict[str, torch.Tensor]:
        """Draw a batch, take one optimizer step; the step's loss terms, detached."""
        idx = self.batches.next()
        for m in self.modules:
            m.train()
        terms = self.step_loss(idx, self.step)
        self.optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        if self.cfg.clip_grad_norm is not None:
            nn.utils.clip_grad_norm_(self.params, self.cfg.clip_grad_norm)
        self.optimizer.step()
        self.step += 1
        self._set_lr()
        return {k: v.detach() for k, v in terms.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "step": self.step, "torch_rng": torch.get_rng_state(),
                "batches": self.batches.state_dict(), "seconds": self.seconds, "timed_steps": self.timed_steps}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self._set_lr()
        torch.set_rng_state(state["torch_rng"])
        self.batches.load_state_dict(state["batches"])
        self.seconds, self.timed_steps = float(state.get("seconds", 0.0)), int(state.get("timed_steps", 0))


def save_checkpoint(path: Path, loop: Loop, modules: Mapping[str, nn.Module], extra: Mapping[str, Any]) -> None:
    """The loop's state, the modules' state dicts (under "modules") and the caller's extra entries, written
    atomically (a temporary file renamed)."""
    tmp = path.with_suffix(".tmp")
    torch.save({**extra, "modules": {k: m.state_dict() for k, m in modules.items()}, **loop.state_dict()}, tmp)
    tmp.replace(path)


def read_checkpoint(path: Path) -> dict[str, Any]:
    ck: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
    return ck


def resume(path: Path, loop: Loop, modules: Mapping[str, nn.Module]) -> dict[str, Any]:
    """Load a checkpoint into the loop and the modules; returns the whole checkpoint."""
    ck = read_checkpoint(path)
    for k, m in modules.items():
        m.load_state_dict(ck["modules"][k])
    loop.load_state_dict(ck)
    return ck


@dataclass(frozen=True)
class RunHooks:
    """What `run` does besides stepping; every field is optional."""

    checkpoint: Path | None = None  # written every checkpoint_every steps and at the run's (or stop's) end
    checkpoint_every: int | None = None
    modules: Mapping[str, nn.Module] | None = None  # saved in the checkpoint
    extra: Mapping[str, Any] | None = None  # saved in the checkpoint beside them
    metrics: Path | None = None  # JSON lines appended every eval_every steps and at the run's end
    eval_every: int | None = None
    evaluate: Callable[[int], dict[str, Any] | None] | None = None  # step -> a "valid" line (or None)
    record: Callable[[int], dict[str, Any]] | None = None  # step -> extra fields of the "train" line
    progress: bool = False
    desc: str | None = None
    reduce: Callable[[dict[str, float]], dict[str, float]] | None = None  # the logged figures across processes


def run(loop: Loop, hooks: RunHooks | None = None, stop_after: int | None = None) -> None:
    """Step until loop.cfg.steps (or step `stop_after`, to be resumed later), from wherever the loop is."""
    hooks = hooks or RunHooks()
    steps = loop.cfg.steps
    stop = steps if stop_after is None else min(stop_after, steps)
    bar = tqdm(range(loop.step, stop), initial=loop.step, total=steps, disable=not hooks.progress,
               desc=hooks.desc, dynamic_ncols=True)
    log: IO[str] | None
    with hooks.metrics.open("a") if hooks.metrics is not None else nullcontext() as log:
        for step in bar:
            t0 = time.perf_counter()
            terms = loop.one_step()
            loop.seconds += time.perf_counter() - t0
            loop.timed_steps += 1
            done = step + 1
            if done % 50 == 0:
                bar.set_postfix(loss=f"{float(terms['loss']):.2f}")
            if hooks.eval_every is not None and (done % hooks.eval_every == 0 or done == steps):
                _log_eval(log, hooks, step, terms, loop.seconds, loop.timed_steps)
            if hooks.checkpoint is not None and hooks.checkpoint_every is not None and (
                    done % hooks.checkpoint_every == 0 or done in (steps, stop)):
                save_checkpoint(hooks.checkpoint, loop, hooks.modules or {}, hooks.extra or {})


def _log_eval(log: IO[str] | None, hooks: RunHooks, step: int, terms: Mapping[str, torch.Tensor],
              seconds: float, timed_steps: int) -> None:
    done = step + 1
    stats = {k: float(v.mean()) for k, v in terms.items()}
    if hooks.reduce is not None:  # data-parallel: every rank's figures, averaged (training.distributed)
        stats = hooks.reduce(stats)
    record = {"step": done, "split": "train", "seconds": seconds, "timed_steps": timed_steps, **stats,
              **(hooks.record(step) if hooks.record else {})}
    valid = hooks.evaluate(step) if hooks.evaluate else None
    if log is not None:
        log.write(json.dumps(record) + "\n")
        if valid is not None:
            log.write(json.dumps({"step": done, "split": "valid", **valid}) + "\n")
        log.flush()
