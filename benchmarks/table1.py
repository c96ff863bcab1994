"""Table I: binarized MNIST, SDLGM (K=200, L0=40, the paper's architecture) beside the Gumbel-Softmax VAE
(20 x 10 categorical and 200 Bernoulli), trained in the same process for the same iterations, every
figure on the test set with discrete codes, the relaxed ELBO beside them.

    python benchmarks/table1.py                  # 10,000 iterations each (make reproduce-table1)
    python benchmarks/table1.py --iterations 20 --is-rows 50 --out /tmp/t1   # smoke run
    python benchmarks/table1.py --only 3 4       # rerun some methods, keep the other rows

Writes <out>/table1.json (a list of objects, one per method) and <out>/table1.md after each method.
With --reuse, a method whose run directory already holds a finished checkpoint is evaluated without
training again (its ms/iter comes from the run's metrics.jsonl).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tables import merge_row

from training.config import RunConfig, load_config, saved_config
from training.evaluate import evaluate
from training.loop import read_checkpoint
from training.tasks import load_task
from training.trainer import CHECKPOINT, load_checkpoint, train

ROOT = Path(__file__).resolve().parents[1]

SLOT_RECIPE: dict[str, object] = {"model.gate": "slot", "model.learned_prior": True, "train.estimator": "gr",
                                  "train.lr": 0.002, "train.lr_final": 0.0001}
GS_RECIPE: dict[str, object] = {"train.estimator": "gr", "train.lr": 0.002, "train.lr_final": 0.0001,
                                 "train.kl_warmup": 2000, "train.tau.tau0": 0.5, "train.tau_z.tau0": 0.5}
WIDE: dict[str, object] = {"model.encoder": [1024, 512], "model.decoder": [512, 1024]}
LONG = 10  # the longer rows train this many times the headline iterations

# (method, config, overrides); "iterations" in the overrides is a multiple of the headline iterations
METHODS: list[tuple[str, str, dict[str, object]]] = [
    ("SDLGM (K=200, L0=40), straight-through, tau=1", "mnist-sdlgm.yaml", {}),
    ("SDLGM, the paper's recipe: relaxed samples, learned temperatures", "mnist-sdlgm.yaml",
     {"train.estimator": "relaxed", "train.tau.kind": "learned", "train.tau_z.kind": "learned"}),
    ("SDLGM variant: per-slot logits pi_l, straight-through, tau=1", "mnist-sdlgm.yaml", {"model.per_slot": True}),
    ("GS-VAE 20x10 categorical, straight-through, tau=1", "mnist-gsvae.yaml", {}),
    ("GS-VAE 200 Bernoulli, straight-through, tau=1", "mnist-gsvae.yaml", {"model.n_vars": 200, "model.n_classes": 2}),
    ("SDLGM, gated KL (an off slot's category is not charged), straight-through, tau=1", "mnist-sdlgm.yaml",
     {"model.gated_kl": True}),
    ("SDLGM, gate in the slot 40 x (5 + off), learned prior, Gumbel-Rao, tau=1, Adam 2e-3 cosine, paper nets",
     "mnist-sdlgm.yaml", SLOT_RECIPE),
    ("SDLGM, gate in the slot, Gumbel-Rao, tau=0.5, KL warm-up 2k, Adam 2e-3 cosine, nets 512-256 / 256-512",
     "mnist-sdlgm-slot.yaml", {}),
    ("GS-VAE 20x10 with the same recipe (Gumbel-Rao, tau=0.5, KL warm-up 2k, Adam 2e-3 cosine)", "mnist-gsvae.yaml",
     GS_RECIPE),
    ("SDLGM, gate in the slot, tau=0.5 recipe (nets 512-256 / 256-512), 10x the iterations", "mnist-sdlgm-slot.yaml", {"iterations": LONG}),
    ("GS-VAE 20x10 with the same recipe, 10x the iterations", "mnist-gsvae.yaml",
     {**GS_RECIPE, "iterations": LONG}),
    ("SDLGM, gate in the slot, tau=0.5 recipe (nets 512-256 / 256-512), gradient norm clipped at 10",
     "mnist-sdlgm-slot.yaml", {"train.clip_grad_norm": 10.0}),
    ("SDLGM, gate in the slot, tau=0.5 recipe, gradient norm clipped at 10, 10x the iterations",
     "mnist-sdlgm-slot.yaml", {"train.clip_grad_norm": 10.0, "iterations": LONG}),
    ("SDLGM, gate in the slot, tau=0.5 recipe, clipped at 10, nets 1024-512 / 512-1024, 10x the iterations",
     "mnist-sdlgm-slot.yaml", {**WIDE, "train.clip_grad_norm": 10.0, "iterations": LONG}),
    ("GS-VAE 20x10 with the same recipe, clipped at 10, nets 1024-512 / 512-1024, 10x the iterations",
     "mnist-gsvae.yaml", {**GS_RECIPE, **WIDE, "train.clip_grad_norm": 10.0, "iterations": LONG}),
    ("SDLGM, gate in the slot, tau=0.5 recipe, clipped at 10, nets 1024-512 / 512-1024",
     "mnist-sdlgm-slot.yaml", {**WIDE, "train.clip_grad_norm": 10.0}),
    ("GS-VAE 20x10 with the same recipe, clipped at 10, nets 1024-512 / 512-1024",
     "mnist-gsvae.yaml", {**GS_RECIPE, **WIDE, "train.clip_grad_norm": 10.0}),
    ("GS-VAE 20x10 with the same recipe, gradient norm clipped at 10", "mnist-gsvae.yaml",
     {**GS_RECIPE, "train.clip_grad_norm": 10.0}),
    ("GS-VAE 20x10 with the same recipe, gradient norm clipped at 10, 10x the iterations", "mnist-gsvae.yaml",
     {**GS_RECIPE, "train.clip_grad_norm": 10.0, "iterations": LONG}),
    ("SDLGM, gate in the slot, tau=0.5 recipe, clipped at 10, KL warm-up 20k (the 10k rows' share), 10x the "
     "iterations", "mnist-sdlgm-slot.yaml", {"train.clip_grad_norm": 10.0, "train.kl_warmup": 20000, "iterations": LONG}),
]

# What the papers report (see ../shared/REFERENCES.md for what each measures).
PAPER = [
    ("SDLGM paper, Table I", "99.05 ± 1.07", "relaxed ELBO, single sample, learned temperatures"),
    ("Gumbel-Softmax paper, categorical GS", "101.5", "discrete bound, m = 1000 samples"),
    ("Gumbel-Softmax paper, Bernoulli GS", "105.0", "discrete bound"),
    ("Gumbel-Softmax paper, ST-GS categorical / Bernoulli", "107.8 / 111.5", "discrete bound"),
    ("Gaussian VAE / IWAE (k=50), static binarization", "88.7 / 87.1", "importance-weighted bound"),
]


def finished_run(cfg: RunConfig, out: Path) -> tuple[Any, Any] | None:
    """(model, temperatures) of a finished run of this config in out (on any device, as `same_run`), else None."""
    if not (out / CHECKPOINT).exists():
        return None
    saved, model, temps, ck = load_checkpoint(out / CHECKPOINT)
    if not same_run(saved, cfg) or int(ck["step"]) != cfg.train.iterations:
        return None
    return model, temps


def same_run(saved: RunConfig, cfg: RunConfig) -> bool:
    """The same run whatever device it trained on so far: a run begun on a GPU can finish on a CPU."""
    return saved.model_copy(update={"train": saved.train.model_copy(update={"device": cfg.train.device})}) == cfg


def run_one(method: str, cfg: RunConfig, out: Path, progress: bool, reuse: bool) -> dict[str, Any]:
    task = load_task(cfg.data, cfg.train.seed)
    done = finished_run(cfg, out) if reuse else None
    if done is None:  # an interrupted run of the same config continues from its checkpoint
        ck = out / CHECKPOINT
        again = ck.exists() and same_run(saved_config(read_checkpoint(ck)["run_config"]), cfg)
        model, temps = train(cfg, task, out, resume=again, progress=progress, evaluate_valid=False)
    else:
        model, temps = done
    # The steps' own time, summed over every resume (a checkpoint written before the loop kept time
    # covers fewer steps: the mean over those timed stands for all).
    timing = read_checkpoint(out / CHECKPOINT)
    ms_per_iter = 1000 * float(timing["seconds"]) / int(timing["timed_steps"])
    t0 = time.perf_counter()
    step = cfg.train.iterations
    ev = evaluate(model, task, "test", temps, step, cfg.eval.is_samples, cfg.eval.is_rows, cfg.eval.is_seed)
    # The validation figure beside it: what a choice between rows is made on (never the test column).
    valid = evaluate(model, task, "valid", temps, step, is_samples=0) if len(task.valid) else None
    return {
        "method": method,
        "relaxed_neg_elbo": ev["relaxed_neg_elbo"],
        "discrete_neg_elbo": ev["discrete_neg_elbo"],
        "valid_discrete_neg_elbo": None if valid is None else valid["discrete_neg_elbo"],
        "is_nll": ev["is_nll"],
        "is_nll_se": ev["is_nll_se"],
        "is_subset": ev["is_subset"],
        "mode_code_recon_nll": ev["mode_code_recon_nll"],
        "mean_L": ev["mean_L_hat"] if cfg.model.kind == "sdlgm" else None,
        "kl": ev["kl"],
        "ms_per_iter": ms_per_iter,
        "timed_steps": int(timing["timed_steps"]),
        "seconds_total": ms_per_iter * step / 1000 + time.perf_counter() - t0,
        "iterations": step,
        "device": cfg.train.device,
        "seed": cfg.train.seed,
        "is_samples": ev["is_samples"],
        "is_rows": ev["is_rows"],
        "test_rows": ev["rows"],
        "temperatures": temps.current(step),
    }


def merge(path: Path, row: dict[str, Any]) -> list[dict[str, Any]]:
    """Put row into the table on disk (replacing the same method's), in METHODS order."""
    return merge_row(path, row, "method", [m for m, _, _ in METHODS])


def _device(row: dict[str, Any]) -> str:
    return "" if row.get("device", "cpu") == "cpu" else f" ({row['device']})"


def markdown(rows: list[dict[str, Any]]) -> str:
    first = rows[0] if rows else {"test_rows": 0, "is_rows": 0, "is_samples": 0, "is_subset": "", "iterations": 0}
    lines = [
        "# Table I: binarized MNIST (test set, nats per image)",
        "",
        "Generated by `make reproduce-table1` (`python benchmarks/table1.py`). *Discrete* figures use hard",
        "samples of the code (what the service ships); *relaxed* is the paper's figure, given beside them.",
        "`mean L` is the deterministic code's total count L_hat. Rows: the ELBOs, recon NLL and KL on all",
        f"{first['test_rows']} test images; the importance-sampled -log p(x) on {first['is_rows']} of them",
        f"({first['is_subset']}; ± its standard error), with {first['is_samples']} samples per image.",
        "",
        "| method | discrete -ELBO | relaxed -ELBO | IS -log p(x) | mode-code recon NLL | KL | mean L | ms/iter | iterations | wall min |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        mean_l = "" if r["mean_L"] is None else f"{r['mean_L']:.1f}"
        se = r.get("is_nll_se")
        is_cell = f"{r['is_nll']:.2f}" + (f" ± {se:.2f}" if se is not None else "")
        lines.append(f"| {r['method']} | {r['discrete_neg_elbo']:.2f} | {r['relaxed_neg_elbo']:.2f} | "
                     f"{is_cell} | {r['mode_code_recon_nll']:.2f} | {r['kl']:.1f} | {mean_l} | "
                     f"{r['ms_per_iter']:.1f}{_device(r)} | {r['iterations']} | {r['seconds_total'] / 60:.0f} |")
    seeds = ", ".join(str(s) for s in sorted({int(r.get("seed", 0)) for r in rows})) or "0"
    lines += ["", f"Batch 100; Adam 1e-3 unless the row says otherwise. Each row is one seed ({seeds}). ms/iter is the mean "
              "time of a training step (evaluation and checkpoints excluded) over the steps timed, summed across "
              "resumes; wall min is ms/iter x iterations plus this evaluation. Both are on one thread of this "
              "2-core machine, shared with other jobs while these rows ran, so they compare rows only roughly; "
              "a row marked (cuda) trained on one H200 GPU (`--device cuda`), several rows at once, and was "
              "evaluated on that machine's CPU.",
              "",
              "## The papers' figures", "", "| source | -ELBO | what it measures |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in PAPER]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iterations", type=int, default=10_000)
    p.add_argument("--is-rows", type=int, default=2000, help="test images for the IS estimate, a seeded "
                   "random sample (the discrete and relaxed ELBOs use all of them)")
    p.add_argument("--is-samples", type=int, default=100)
    p.add_argument("--out", default=str(ROOT / "docs" / "results"))
    p.add_argument("--runs", default=str(ROOT / "runs" / "table1"))
    p.add_argument("--only", type=int, nargs="*", help="indices of METHODS to run (default all)")
    p.add_argument("--reuse", action="store_true", help="evaluate finished runs instead of training again")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--seed", type=int, default=0, help="train.seed of every row (the table's rows are seed 0)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="where the rows train (train.device); evaluation runs on the CPU either way")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.only is None and (out / "table1.json").exists():
        (out / "table1.json").unlink()
    for i, (method, config, overrides) in enumerate(METHODS):
        if args.only is not None and i not in args.only:
            continue
        rest = {k: v for k, v in overrides.items() if k != "iterations"}
        iterations = args.iterations * int(overrides.get("iterations", 1))  # type: ignore[call-overload]
        cfg = load_config(ROOT / "configs" / config, {**rest, "train.iterations": iterations,
                                                      "train.checkpoint_every": 1000,
                                                      "train.device": args.device,
                                                      "train.seed": args.seed,
                                                      "train.eval_every": iterations,
                                                      "eval.is_rows": args.is_rows,
                                                      "eval.is_samples": args.is_samples})
        row = run_one(method, cfg, Path(args.runs) / str(i), not args.no_progress, args.reuse)
        print(json.dumps(row))
        rows = merge(out / "table1.json", row)
        (out / "table1.md").write_text(markdown(rows))
    print(markdown(rows))
    print(f"table1: {time.perf_counter() - t0:.0f} s on this machine")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
