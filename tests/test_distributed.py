"""Data-parallel training (training.distributed): `sdlgm train` under a real torchrun with 2 processes
(gloo) on a short run of the default model kind, against one process with the same global batch. The
search model's loss is deterministic given the batch, so the two loss curves agree to float rounding
(the all-reduced gradient sums in another order): within REL_TOL, measured about 6e-8. The checkpoint that
rank 0 alone writes resumes in a single process and ends where the single-process run ends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO

from training.config import load_config
from training.distributed import World
from training.tasks import load_task
from training.trainer import CHECKPOINT, METRICS, load_checkpoint, train

REL_TOL = 1e-5  # relative, on every logged train loss and validation -ELBO
STEPS, STOP = 20, 10
TINY = {"train.iterations": STEPS, "train.eval_every": 5, "train.checkpoint_every": STEPS, "train.batch_size": 64,
        "model.C": 16, "model.decoder": [16], "model.beam": 4, "model.train_beam": 4, "model.candidates": 4,
        "model.init_rows": 2000, "data.stride": 10,
        "train.keep_best": False}  # keep_best's choice restarts at a resume: the end states would differ


def _metrics(run: Path) -> dict[tuple[int, str], float]:
    lines = [json.loads(x) for x in (run / METRICS).read_text().splitlines()]
    return {(r["step"], r["split"]): r["loss"] if r["split"] == "train" else r["discrete_neg_elbo"] for r in lines}


def test_two_processes_follow_the_single_process_loss_curve_and_their_checkpoint_resumes_in_one(
        tmp_path: Path) -> None:
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("no torchrun beside this python")
    sets = [a for k, v in TINY.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    two = tmp_path / "two"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "training.cli", "train",
                           "--config", "configs/kpi5g.yaml", "--out", str(two), "--stop-after", str(STOP),
                           "--no-progress", *sets], cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    printed = [json.loads(x) for x in done.stdout.splitlines() if x.startswith("{")]
    assert printed == [{"run": str(two), "checkpoint": str(two / CHECKPOINT), "processes": 2}]  # rank 0 only
    assert sorted(p.name for p in two.iterdir()) == [CHECKPOINT, METRICS]

    cfg = load_config(REPO / "configs" / "kpi5g.yaml", TINY)
    task = load_task(cfg.data)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as torchrun's processes run (OMP_NUM_THREADS=1): tiny steps, shared cores
    try:
        one, _ = train(cfg, task, tmp_path / "one", progress=False)
        resumed, _ = train(cfg, task, two, resume=True, progress=False)  # the 2-process checkpoint, one process
    finally:
        torch.set_num_threads(threads)

    single, parallel = _metrics(tmp_path / "one"), _metrics(two)
    assert sorted(parallel) == sorted(single) and len(single) == 2 * STEPS // 5
    for key, value in single.items():
        assert parallel[key] == pytest.approx(value, rel=REL_TOL), key
    assert load_checkpoint(two / CHECKPOINT)[3]["step"] == STEPS
    for (k, a), b in zip(one.state_dict().items(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6, msg=k)


def test_a_world_shards_each_batch_by_rank_and_refuses_a_batch_it_cannot_split() -> None:
    idx = torch.arange(10, 20)
    shards = [World(rank=r, size=2).shard(idx) for r in range(2)]
    assert shards[0].tolist() == [10, 12, 14, 16, 18] and shards[1].tolist() == [11, 13, 15, 17, 19]
    assert World().mean({"loss": 2.5}) == {"loss": 2.5}
    with pytest.raises(ValueError, match="train.batch_size 63 does not split over 2 processes; use a multiple of 2"):
        World(rank=0, size=2).check_batch(63)
