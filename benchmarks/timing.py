"""Timing: milliseconds per training iteration of the SDLGM (K=200, L0=40, the paper's MNIST architecture)
and of the Gumbel-Softmax VAE (20 x 10), batch 100, straight-through estimator, in the same process.

Each repetition times `--iters` steps of the training loop (training.loop: Adam) of every method in turn (interleaved, so load on the machine
hits all alike); the figure is the median over repetitions. The paper: 0.013 s against 0.009 s, a
ratio of 1.44. "SDLGM" is the model as the trainer runs it (its straight-through slots go through
`model.fused`); a second row times the plain-autograd slot sampler `sample_code_autograd` (the same
samples and gradients, tested in tests/test_variants.py) to show what fusing saves.

    python benchmarks/timing.py            # make reproduce-timing
    python benchmarks/timing.py --quick    # seconds: a smoke run
    python benchmarks/timing.py --device cuda --threads 1   # on a GPU, as the paper (synchronized clocks)

Writes <out>/timing.json (objects with method, ms_per_iter, ...); the rows of other (device, thread count,
clock) triples already there are kept, so `--threads 1`, `--device cuda` or `--clock cpu` adds to the
file instead of replacing it. `--clock cpu --threads 1` times with this process's CPU time, which other
jobs on a shared machine inflate far less than wall time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from model import gsvae, sdlgm
from model.family import Batch, DataShape, Generative
from model.sdlgm import sample_code_autograd
from training import datasets
from training.loop import Loop, LoopConfig

ROOT = Path(__file__).resolve().parents[1]
MNIST = DataShape(D=784)  # the paper's MNIST architecture (the families' defaults), Bernoulli pixels
PAPER = {"SDLGM": 13.0, "GS-VAE 20x10": 9.0}


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so that the clock reads finished work (nothing to do on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_fn(model: Generative, x: torch.Tensor, steps: int, autograd_slots: bool = False) -> Callable[[], None]:
    """One step of the training loop (Adam, batches of 100 drawn with replacement, straight-through at
    tau = 1) on x's device; `steps` is the number the caller will take."""
    model.to(x.device)
    if autograd_slots:
        net = sdlgm.FAMILY.of(model)
        net.sample_code = lambda pi, lam, tau, tau_z, mode: sample_code_autograd(  # type: ignore[method-assign]
            pi, lam, tau, tau_z, mode, net.cfg.L0)
    loop = Loop(LoopConfig(steps=steps, batch_size=100, order="replacement"), model.parameters(), len(x),
                lambda idx, _: model.loss(Batch(x[idx.to(x.device)])), [model])

    def step() -> None:
        loop.one_step()

    return step


CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


def profile_sdlgm(x: torch.Tensor, iters: int, clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Share of an SDLGM training step spent in sample_code, forward and backward (ms per call)."""
    model = sdlgm.FAMILY.build(MNIST).to(x.device)
    xb = x[:100]
    pi, lam = model.pi_logits(xb), model.lambda_logits(xb)
    out: dict[str, float] = {}
    for name, fn in (("sample_code", lambda: model.sample_code(pi, lam, 1.0, 1.0, "st")),
                     ("sample_code_autograd", lambda: sample_code_autograd(pi, lam, 1.0, 1.0, "st", model.cfg.L0))):
        ts = []
        for _ in range(iters):
            t0 = clock()
            z, L = fn()
            (z.sum() + L.sum()).backward(retain_graph=True)
            sync(x.device)
            ts.append(clock() - t0)
        out[f"{name}_fwd_bwd_ms"] = 1000 * statistics.median(ts)
    return out


def time_methods(x: torch.Tensor, threads: int, reps: int, iters: int, clock: str = "wall") -> list[dict[str, Any]]:
    """ms per iteration of every method at one torch thread count, interleaved; one row per method. The
    clock is wall time, or this process's CPU time ("cpu": at one thread, what other jobs on a shared
    machine do not inflate)."""
    tick = CLOCKS[clock]
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    n = 1 + reps * iters  # a warm-up step, then the timed ones
    steps = {
        "SDLGM": step_fn(sdlgm.FAMILY.build(MNIST), x, n),
        "SDLGM, plain-autograd slot sampler": step_fn(sdlgm.FAMILY.build(MNIST), x, n, autograd_slots=True),
        "GS-VAE 20x10": step_fn(gsvae.FAMILY.build(MNIST), x, n),
    }
    times: dict[str, list[float]] = {k: [] for k in steps}
    for fn in steps.values():  # warm-up
        fn()
    sync(x.device)
    for _ in range(reps):
        for name, fn in steps.items():
            t0 = tick()
            for _ in range(iters):
                fn()
            sync(x.device)
            times[name].append(1000 * (tick() - t0) / iters)
    base = statistics.median(times["GS-VAE 20x10"])
    rows: list[dict[str, Any]] = []
    for name, ts in times.items():
        ms = statistics.median(ts)
        q = statistics.quantiles(ts, n=4) if len(ts) >= 2 else [ms, ms, ms]
        rows.append({"method": name, "ms_per_iter": round(ms, 3), "ratio_to_gsvae": round(ms / base, 3),
                     "paper_ms_per_iter": PAPER.get(name), "reps": reps, "iters_per_rep": iters,
                     "batch": 100, "threads": threads, "device": str(x.device), "iqr_ms": round(q[2] - q[0], 3),
                     "clock": clock})
    prof = profile_sdlgm(x, 5 if reps < 5 else 50, tick)
    rows.append({"method": "profile: sample_code forward+backward alone", "ms_per_iter": None,
                 "threads": threads, "device": str(x.device), "clock": clock,
                 **{k: round(v, 3) for k, v in prof.items()}})
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--iters", type=int, default=20, help="iterations per method per repetition")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch thread counts, each timed")
    p.add_argument("--device", default="cpu", help="cpu, or cuda to time on a GPU (as the paper did)")
    p.add_argument("--clock", choices=list(CLOCKS), default="wall",
                   help="wall time, or this process's CPU time (cpu only, one thread: robust to other jobs)")
    p.add_argument("--quick", action="store_true", help="3 repetitions of 3 iterations")
    p.add_argument("--out", default=str(ROOT / "docs" / "results"))
    args = p.parse_args(argv)
    if args.quick:
        args.reps, args.iters = 3, 3
    try:
        device = torch.device(args.device)
    except RuntimeError as e:
        p.error(f"--device {args.device!r}: {e}; use cpu, cuda or cuda:N")
    if device.type not in ("cpu", "cuda"):
        p.error(f"--device {args.device!r}: timed on cpu or cuda only")
    if args.clock == "cpu" and (device.type != "cpu" or args.threads != [1]):
        p.error("--clock cpu sums the CPU time of every thread and misses GPU work: use it with --device cpu "
                "--threads 1, or --clock wall")
    if device.type == "cuda" and not torch.cuda.is_available():
        built = torch.version.cuda or "none: a CPU-only build"
        p.error(f"--device cuda: torch {torch.__version__} sees no CUDA device (its CUDA: {built}); run it on a "
                "machine with an NVIDIA GPU and a CUDA build of torch, or time with --device cpu")
    t_start = time.perf_counter()
    x = torch.from_numpy(datasets.load_binarized_mnist("train", datasets.data_dir())).to(device)
    rows: list[dict[str, Any]] = []
    for threads in args.threads:
        rows += time_methods(x, threads, args.reps, args.iters, args.clock)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "timing.json"
    ran = {(str(device), t, args.clock) for t in args.threads}
    earlier = json.loads(path.read_text()) if path.exists() else []
    kept = [r for r in earlier if (r.get("device", "cpu"), r.get("threads"), r.get("clock", "wall")) not in ran]
    path.write_text(json.dumps(kept + rows, indent=2) + "\n")
    for r in rows:
        print(json.dumps(r))
    for threads in args.threads:
        ratio = {r["method"]: r.get("ratio_to_gsvae") for r in rows if r["threads"] == threads}
        print(f"{threads} thread(s): paper ratio 1.44 (13 ms / 9 ms); ours {ratio['SDLGM']:.2f} "
              f"({ratio['SDLGM, plain-autograd slot sampler']:.2f} with the plain-autograd slot sampler)")
    print(f"timing: {time.perf_counter() - t_start:.0f} s on this machine")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
