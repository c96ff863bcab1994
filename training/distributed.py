"""Data-parallel training under torchrun: the process group, the rank's shard of each global batch, the
all-reduce of the logged figures, and the DistributedDataParallel wrapper of one training step.

    torchrun --standalone --nproc_per_node 2 -m training.cli train --config configs/kpi5g.yaml --out runs/x

`World.from_env` reads torchrun's RANK, WORLD_SIZE and LOCAL_RANK (a plain `sdlgm train` is a world of
one, with no process group) and joins the group: gloo when the run trains on CPU (`train.device: cpu`),
nccl on CUDA, one GPU per local rank. Every rank draws the same global batch (the batch order's
generator is seeded alike on every rank) and trains on rows rank, rank + W, rank + 2W, ... of it, so W
processes see exactly the rows of one process at the same `train.batch_size`; DDP averages the ranks'
gradients, the mean over the whole batch as one process computes it. Rank 0 alone evaluates, writes
metrics and checkpoints; its checkpoint holds the unwrapped model's state, so a run resumes in one process
or in W. The model's own noise (Gumbel samples) is drawn from each rank's generator, seeded apart.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

GROUP_TIMEOUT = timedelta(hours=2)

Device = str  # "cpu" or "cuda"


def torch_device(device: Device, local: int = 0) -> torch.device:
    """The torch device of train.device (GPU `local` for cuda); a clear error when CUDA is asked for and this
    torch sees none, rather than torch's assertion at the first tensor moved."""
    if device != "cuda":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError("train.device is cuda but this torch sees no CUDA device; set train.device=cpu")
    return torch.device("cuda", local)


@dataclass(frozen=True)
class World:
    """This process's place among the W training processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        """The rank that evaluates, logs and checkpoints."""
        return self.rank == 0

    @classmethod
    def from_env(cls, device: Device = "cpu") -> World:
        """The world torchrun describes in the environment, its process group joined; one process without."""
        size = int(os.environ.get("WORLD_SIZE", "1"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        where = torch_device(device, local)
        if where.type == "cuda":
            torch.cuda.set_device(local)
        if size == 1:
            return cls(device=where)
        if not dist.is_initialized():
            # Rank 0 evaluates alone while the others wait in the next all-reduce: an evaluation of the
            # full validation split can outlast the default 10 minutes of NCCL (30 of gloo).
            dist.init_process_group("nccl" if device == "cuda" else "gloo", timeout=GROUP_TIMEOUT)
        return cls(dist.get_rank(), dist.get_world_size(), local, where)

    def close(self) -> None:
        if self.size > 1 and dist.is_initialized():
            dist.destroy_process_group()

    def check_batch(self, batch_size: int) -> None:
        if batch_size % self.size:
            raise ValueError(f"train.batch_size {batch_size} does not split over {self.size} processes; "
                             f"use a multiple of {self.size}")

    def shard(self, idx: torch.Tensor) -> torch.Tensor:
        """This rank's rows of the global batch (every rank holds the same idx)."""
        return idx[self.rank:: self.size]

    def seed(self, seed: int, step: int) -> None:
        """Seed the model's noise apart on ranks 1.. (rank 0 keeps the stream a single process has)."""
        if self.rank:
            torch.manual_seed(seed + 1_000_003 * self.rank + step)

    def mean(self, stats: Mapping[str, float]) -> dict[str, float]:
        """The ranks' figures averaged (each over an equal shard: the global batch's mean); every rank
        calls it at the same steps."""
        if self.size == 1:
            return dict(stats)
        keys = sorted(stats)
        t = torch.tensor([stats[k] for k in keys], dtype=torch.float64,
                         device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(t)
        return {k: float(v) / self.size for k, v in zip(keys, t.tolist(), strict=True)}


StepFn = Callable[[torch.Tensor, int], Mapping[str, torch.Tensor]]


class StepModule(nn.Module):
    """One step's loss as a module, so that DDP wraps it: (rows, step) -> the loss terms. Holds the modules
    whose parameters train (the model, learned temperatures) so that DDP reduces all their gradients."""

    def __init__(self, modules: Mapping[str, nn.Module], step_loss: StepFn) -> None:
        super().__init__()
        self.trained = nn.ModuleDict(dict(modules))
        self.step_loss = step_loss

    def forward(self, idx: torch.Tensor, step: int) -> Mapping[str, torch.Tensor]:
        return self.step_loss(idx, step)


def parallel(world: World, modules: Mapping[str, nn.Module], step_loss: StepFn) -> StepFn:
    """step_loss over this rank's shard of each batch, its gradients averaged over the ranks by DDP (which
    also broadcasts rank 0's parameters now, so every rank starts from the same state)."""
    if world.size == 1:
        return step_loss
    step = StepModule(modules, step_loss)
    ids = [world.local_rank] if world.device.type == "cuda" else None
    ddp = DistributedDataParallel(step, device_ids=ids, find_unused_parameters=True)

    def sharded(idx: torch.Tensor, s: int) -> Mapping[str, torch.Tensor]:
        return ddp(world.shard(idx), s)

    return sharded
