"""benchmarks/table1.py's runs across devices: a run begun on a GPU (`--device cuda`) is the same run when it
continues on a CPU (only train.device may differ), the rows say where they trained, and `--device cuda` on a
machine without CUDA stops with what to do instead of training on the CPU under a GPU label."""

from __future__ import annotations

from pathlib import Path

import pytest
import table1
import torch

from training.config import load_config

CONFIG = table1.ROOT / "configs" / "mnist-sdlgm-slot.yaml"


def test_a_run_is_the_same_run_on_another_device_and_on_nothing_else() -> None:
    cpu = load_config(CONFIG, {"train.iterations": 100})
    cuda = load_config(CONFIG, {"train.iterations": 100, "train.device": "cuda"})
    assert cpu != cuda
    assert table1.same_run(cuda, cpu) and table1.same_run(cpu, cuda)
    for other in ({"train.clip_grad_norm": 10.0}, {"train.iterations": 200}, {"model.L0": 20}):
        assert not table1.same_run(load_config(CONFIG, {"train.iterations": 100, "train.device": "cuda", **other}), cpu)


def test_rows_trained_on_a_gpu_are_marked_in_the_table() -> None:
    row = {"method": "m", "discrete_neg_elbo": 100.0, "relaxed_neg_elbo": 99.0, "is_nll": 95.0, "is_nll_se": 0.5,
           "is_subset": "uniform random, seed 0", "mode_code_recon_nll": 80.0, "mean_L": 20.0, "kl": 17.0,
           "ms_per_iter": 4.8, "seconds_total": 600.0, "iterations": 100000, "is_rows": 2000, "is_samples": 100,
           "test_rows": 10000}
    on_gpu = table1.markdown([{**row, "device": "cuda"}])
    on_cpu = table1.markdown([{**row, "device": "cpu"}, {**row, "method": "older row, no device recorded"}])
    assert "| 4.8 (cuda) | 100000 |" in on_gpu
    assert "(cuda)" not in on_cpu.split("\n\n")[2]  # the rows of the table, not its note
    assert on_cpu.count("| 4.8 | 100000 |") == 2
    assert "Each row is one seed (0)." in on_cpu
    assert "Each row is one seed (2)." in table1.markdown([{**row, "seed": 2}])


def test_device_cuda_without_a_gpu_stops_before_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a machine without CUDA, even where one is
    with pytest.raises(ValueError, match="train.device is cuda but this torch sees no CUDA device"):
        table1.main(["--device", "cuda", "--only", "11", "--iterations", "2", "--is-rows", "5", "--is-samples", "2",
                     "--out", str(tmp_path / "out"), "--runs", str(tmp_path / "runs"), "--no-progress"])
    assert not (tmp_path / "out" / "table1.json").exists()


def test_a_finished_run_is_reused_whichever_device_it_trained_on(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    table1.main(["--only", "11", "--iterations", "3", "--is-rows", "5", "--is-samples", "2",
                 "--out", str(tmp_path / "out"), "--runs", str(runs), "--no-progress"])
    overrides = {"train.iterations": 3, "train.checkpoint_every": 1000, "train.eval_every": 3, "eval.is_rows": 5,
                 "eval.is_samples": 2, "train.clip_grad_norm": 10.0}
    on_cpu = load_config(CONFIG, overrides)
    assert table1.finished_run(on_cpu, runs / "11") is not None
    assert table1.finished_run(load_config(CONFIG, {**overrides, "train.device": "cuda"}), runs / "11") is not None
    assert table1.finished_run(load_config(CONFIG, {**overrides, "train.iterations": 4}), runs / "11") is None
