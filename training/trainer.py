"""Training of any registered model kind from a RunConfig: builds the model through the registry, runs
the one loop (`training.loop`) with seeds, checkpoints, resume, a validation split and metrics written as
JSON lines (one object per line in <out>/metrics.jsonl).

The default estimator is straight-through Gumbel-softmax ("st"): the decoder sees hard samples (the same
discrete codes the service ships), and only the gradient goes through the relaxation. With relaxed samples
and learned temperatures the information flows through the soft samples rather than the code (see
docs/training.md); that mode is kept for the paper's recipe and measured beside it.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from model import registry
from model.family import Batch, SparseModel
from training.config import RunConfig, TrainConfig, saved_config
from training.distributed import World, parallel, torch_device
from training.evaluate import evaluate
from training.loop import Loop, LoopConfig, RunHooks, Schedule, read_checkpoint, run, save_checkpoint
from training.loop import resume as resume_from
from training.tasks import Task, standardized, targets
from training.temperatures import Temperatures

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"


def build_model(cfg: RunConfig, task: Task) -> SparseModel:
    """The model cfg.model names, for the task's data, with the task's standardization."""
    model: SparseModel = registry.family(cfg.model.kind).model(cfg.model.config(task.shape))
    model.set_standardization(torch.from_numpy(task.mean), torch.from_numpy(task.std))
    return model


def loop_config(tc: TrainConfig) -> LoopConfig:
    if tc.lr_final is not None:
        schedule = Schedule("cosine", lr_final=tc.lr_final)
    elif tc.lr_drop is not None:
        schedule = Schedule("step", at=tc.lr_drop.at, divisor=tc.lr_drop.divisor)
    else:
        schedule = Schedule()
    return LoopConfig(steps=tc.iterations, batch_size=tc.batch_size, lr=tc.lr, optimizer=tc.optimizer,
                      weight_decay=tc.weight_decay, schedule=schedule, clip_grad_norm=tc.clip_grad_norm,
                      order=tc.order, drop_last=True, seed=tc.seed)


def kl_weight(warmup: int, step: int) -> float:
    """beta at step (0-based): (step + 1) / warmup during a KL warm-up, then 1."""
    return 1.0 if warmup == 0 else min(1.0, (step + 1) / warmup)


def load_checkpoint(path: Path) -> tuple[RunConfig, SparseModel, Temperatures, dict[str, Any]]:
    """Rebuild the model from the checkpoint alone (its config travels inside)."""
    ck = read_checkpoint(path)
    cfg = saved_config(ck["run_config"])
    model = registry.family(ck["model_kind"]).rebuild(ck["model_config"])
    model.load_state_dict(ck["modules"]["model"])
    temps = Temperatures(cfg.train.tau, cfg.train.tau_z)
    temps.load_state_dict(ck["modules"]["temperatures"])
    return cfg, model, temps, ck


def train(cfg: RunConfig, task: Task, out_dir: Path, resume: bool = False, progress: bool = True,
          evaluate_valid: bool = True, stop_after: int | None = None,
          world: World | None = None) -> tuple[SparseModel, Temperatures]:
    """Train for cfg.train.iterations steps (or stop after step `stop_after`, to be resumed later);
    writes <out>/checkpoint.pt and <out>/metrics.jsonl. In a world of W processes (training.distributed)
    each trains on its shard of every batch and rank 0 alone evaluates and writes the files."""
    world = world or World(device=torch_device(cfg.train.device))
    out_dir.mkdir(parents=True, exist_ok=True)
    tc = cfg.train
    world.check_batch(tc.batch_size)
    torch.manual_seed(tc.seed)
    model = build_model(cfg, task)
    temps = Temperatures(tc.tau, tc.tau_z)
    x_train, y_train = standardized(task, task.train), targets(task, "train")
    ck_path = out_dir / CHECKPOINT
    resuming = resume and ck_path.exists()
    if not resuming:
        model.initialise(x_train)  # on the CPU rows, before the model moves to its device
    model.to(world.device)
    temps.to(world.device)
    x_dev = x_train.to(world.device)
    y_dev = None if y_train is None else y_train.to(world.device)

    def step_loss(idx: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        return model.loss(Batch(x_dev[idx], None if y_dev is None else y_dev[idx],
                                temps.value("tau", step), temps.value("tau_z", step), tc.estimator,
                                kl_weight(tc.kl_warmup, step)))

    loop = Loop(loop_config(tc), [*model.parameters(), *temps.parameters()], len(x_train), step_loss, [model])
    modules = {"model": model, "temperatures": temps}
    if resuming:
        saved = resume_from(ck_path, loop, modules)
        trained = saved_config(saved["run_config"]).model  # options added since default to the same model
        if trained != cfg.model:
            raise ValueError(f"{ck_path} was trained with model {trained}, not {cfg.model}")
    elif world.main and (out_dir / METRICS).exists():
        (out_dir / METRICS).unlink()
    world.seed(tc.seed, loop.step)
    loop.step_loss = parallel(world, modules, step_loss)  # after the state is final: DDP broadcasts rank 0's

    best: dict[str, Any] = {}  # keep_best: the state with the least validation discrete -ELBO so far

    def on_eval(step: int) -> dict[str, Any] | None:
        if not (evaluate_valid and len(task.valid) and world.main):
            return None
        on_cpu = model if world.device.type == "cpu" else copy.deepcopy(model).cpu()  # evaluation runs on CPU
        ev = evaluate(on_cpu, task, "valid", temps, step, is_samples=0)
        if tc.keep_best and ("score" not in best or ev["discrete_neg_elbo"] < best["score"]):
            best.update(score=ev["discrete_neg_elbo"], step=step + 1, state=copy.deepcopy(model.state_dict()))
        return ev

    family = registry.family(cfg.model.kind)
    hooks = RunHooks(checkpoint=ck_path if world.main else None, checkpoint_every=tc.checkpoint_every,
                     modules=modules, extra={"run_config": cfg.model_dump(mode="json"), "model_kind": family.kind,
                                             "model_config": family.saved_config(model)},
                     metrics=out_dir / METRICS if world.main else None, eval_every=tc.eval_every, evaluate=on_eval,
                     record=temps.current, progress=progress and world.main, desc=cfg.name,
                     reduce=world.mean if world.size > 1 else None)
    run(loop, hooks, stop_after)
    if best and loop.step == tc.iterations:  # the run is over: the checkpoint holds the best state
        model.load_state_dict(best["state"])
        save_checkpoint(ck_path, loop, modules, {**(hooks.extra or {}), "best_step": best["step"]})
    model.cpu().eval()
    temps.cpu()
    return model, temps
