"""Training: builds the model a RunConfig names, runs Adam with seeds, checkpoints, resume, a validation
split and metrics written as JSON lines (one object per line in <out>/metrics.jsonl).

The default estimator is straight-through Gumbel-softmax ("st"): the decoder sees hard samples (the same
discrete codes the service ships), and only the gradient goes through the relaxation. With relaxed samples
and learned temperatures the information flows through the soft samples rather than the code (see
docs/training.md); that mode is kept for the paper's recipe and measured beside it.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from model.dis import DisConfig, SDLGMDis
from model.gsvae import GSVAE, GSVAEConfig
from model.sdlgm import SDLGM, SDLGMConfig
from training.config import RunConfig, Temperature
from training.tasks import Task

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"


class Temperatures(nn.Module):
    """tau (gates) and tau_z (slots) as functions of the iteration; learned ones are parameters."""

    specs: dict[str, Temperature]
    log_tau: nn.ParameterDict

    def __init__(self, tau: Temperature, tau_z: Temperature) -> None:
        super().__init__()
        self.specs = {"tau": tau, "tau_z": tau_z}
        self.log_tau = nn.ParameterDict(
            {k: nn.Parameter(torch.tensor(math.log(s.tau0))) for k, s in self.specs.items() if s.kind == "learned"}
        )

    def value(self, which: str, step: int) -> torch.Tensor | float:
        s = self.specs[which]
        if s.kind == "learned":
            return self.log_tau[which].exp()
        if s.kind == "anneal":
            return max(s.tau_min, s.tau0 * math.exp(-s.rate * step))
        return s.tau0

    def current(self, step: int) -> dict[str, float]:
        return {k: float(self.value(k, step)) for k in self.specs}


def build_model(cfg: RunConfig, task: Task) -> nn.Module:
    m = cfg.model
    model: nn.Module
    if m.kind == "sdlgm":
        model = SDLGM(SDLGMConfig(D=task.D, K=m.K, L0=m.L0, lambda0=m.lambda0, encoder=tuple(m.encoder),
                                  sparsity=tuple(m.sparsity), decoder=tuple(m.decoder),
                                  likelihood="gaussian" if task.likelihood == "gaussian" else "bernoulli",
                                  per_slot=m.per_slot))
    elif m.kind == "gsvae":
        model = GSVAE(GSVAEConfig(D=task.D, n_vars=m.n_vars, n_classes=m.n_classes,
                                  encoder=tuple(m.encoder), decoder=tuple(m.decoder),
                                  likelihood="gaussian" if task.likelihood == "gaussian" else "bernoulli"))
    else:
        assert task.label_names is not None
        model = SDLGMDis(DisConfig(D=task.D, K=len(task.label_names), L0=m.L0, encoder=tuple(m.encoder),
                                   sparsity=tuple(m.sparsity), lambda0=m.lambda0))
    if isinstance(model, SDLGM | SDLGMDis):
        model.x_mean.copy_(torch.from_numpy(task.mean))
        model.x_std.copy_(torch.from_numpy(task.std))
    return model


def standardized(task: Task, x: np.ndarray) -> torch.Tensor:
    if task.likelihood == "bernoulli":
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return torch.from_numpy(((x - task.mean) / task.std).astype(np.float32))


def loss_and_stats(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, temps: Temperatures, step: int,
                   mode: str) -> tuple[torch.Tensor, dict[str, float]]:
    if isinstance(model, SDLGMDis):
        assert y is not None
        ll = model.log_likelihood(x, y)
        return -ll.mean(), {"nll": float(-ll.detach().mean())}
    out = model(x, temps.value("tau", step), temps.value("tau_z", step), mode)
    stats = {k: float(v.detach().mean()) for k, v in out.items() if k != "z"}
    return -out["elbo"].mean(), stats


def save_checkpoint(path: Path, cfg: RunConfig, model: nn.Module, temps: Temperatures,
                    opt: torch.optim.Optimizer | None, step: int, batches: dict[str, Any] | None = None) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({
        "run_config": cfg.model_dump(mode="json"),
        "model_config": asdict(model.cfg),  # type: ignore[call-overload]
        "model_kind": cfg.model.kind,
        "state_dict": model.state_dict(),
        "temperatures": temps.state_dict(),
        "optimizer": opt.state_dict() if opt is not None else None,
        "step": step,
        "torch_rng": torch.get_rng_state(),
        "batches": batches,  # the data order's generator, permutation and cursor: resume is exact
    }, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path) -> tuple[RunConfig, nn.Module, Temperatures, dict[str, Any]]:
    """Rebuild the model from the checkpoint alone (its config travels inside)."""
    ck = torch.load(path, map_location="cpu", weights_only=False)
    cfg = RunConfig.model_validate(ck["run_config"])
    mc = ck["model_config"]
    tupled: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in mc.items()}
    model: nn.Module
    if ck["model_kind"] == "sdlgm":
        model = SDLGM(SDLGMConfig(**tupled))
    elif ck["model_kind"] == "gsvae":
        model = GSVAE(GSVAEConfig(**tupled))
    else:
        model = SDLGMDis(DisConfig(**tupled))
    model.load_state_dict(ck["state_dict"])
    temps = Temperatures(cfg.train.tau, cfg.train.tau_z)
    temps.load_state_dict(ck["temperatures"])
    return cfg, model, temps, ck


def train(cfg: RunConfig, task: Task, out_dir: Path, resume: bool = False, progress: bool = True,
          evaluate_valid: bool = True, stop_after: int | None = None) -> tuple[nn.Module, Temperatures]:
    """Train for cfg.train.iterations steps (or stop after step `stop_after`, to be resumed later);
    writes <out>/checkpoint.pt and <out>/metrics.jsonl."""
    from training.evaluate import evaluate  # evaluation imports the trainer's helpers

    out_dir.mkdir(parents=True, exist_ok=True)
    tc = cfg.train
    torch.manual_seed(tc.seed)
    model = build_model(cfg, task)
    temps = Temperatures(tc.tau, tc.tau_z)
    opt = torch.optim.Adam([*model.parameters(), *temps.parameters()], lr=tc.lr)
    start = 0
    ck_path = out_dir / CHECKPOINT
    x_train = standardized(task, task.train)
    y_train = torch.from_numpy(task.y_train.astype(np.float32)) if task.y_train is not None else None
    gen = torch.Generator().manual_seed(tc.seed)
    perm = torch.randperm(len(x_train), generator=gen)
    cursor = 0
    if resume and ck_path.exists():
        _, model, temps, ck = load_checkpoint(ck_path)
        opt = torch.optim.Adam([*model.parameters(), *temps.parameters()], lr=tc.lr)
        opt.load_state_dict(ck["optimizer"])
        torch.set_rng_state(ck["torch_rng"])
        gen.set_state(ck["batches"]["generator"])
        perm, cursor = ck["batches"]["perm"], int(ck["batches"]["cursor"])
        start = int(ck["step"])
    elif not resume and (out_dir / METRICS).exists():
        (out_dir / METRICS).unlink()
    sched = None
    if tc.lr_final is not None:  # cosine decay from lr to lr_final over the run
        ratio = tc.lr_final / tc.lr

        def factor(s: int) -> float:
            return ratio + (1 - ratio) * 0.5 * (1 + math.cos(math.pi * min(s, tc.iterations) / tc.iterations))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor, last_epoch=start - 1)

    mode = tc.estimator
    t0 = time.perf_counter()
    stop = tc.iterations if stop_after is None else min(stop_after, tc.iterations)
    bar = tqdm(range(start, stop), initial=start, total=tc.iterations, disable=not progress,
               desc=cfg.name, dynamic_ncols=True)
    with (out_dir / METRICS).open("a") as log:
        for step in bar:
            if cursor + tc.batch_size > len(perm):
                perm, cursor = torch.randperm(len(x_train), generator=gen), 0
            idx = perm[cursor: cursor + tc.batch_size]
            cursor += tc.batch_size
            model.train()
            loss, stats = loss_and_stats(model, x_train[idx], None if y_train is None else y_train[idx],
                                         temps, step, mode)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            done = step + 1
            if done % 50 == 0:
                bar.set_postfix(loss=f"{float(loss.detach()):.2f}")
            if done % tc.eval_every == 0 or done == tc.iterations:
                record: dict[str, Any] = {"step": done, "split": "train", "seconds": time.perf_counter() - t0,
                                          **stats, **temps.current(step)}
                log.write(json.dumps(record) + "\n")
                if evaluate_valid and len(task.valid):
                    v = evaluate(model, task, "valid", temps, step, is_samples=0)
                    log.write(json.dumps({"step": done, "split": "valid", **v}) + "\n")
                log.flush()
            if done % tc.checkpoint_every == 0 or done in (tc.iterations, stop):
                save_checkpoint(ck_path, cfg, model, temps, opt, done,
                                {"generator": gen.get_state(), "perm": perm, "cursor": cursor})
    model.eval()
    return model, temps
