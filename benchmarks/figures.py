"""Figures 3-5 as PNG under docs/ (matplotlib, Agg).

* Fig. 3 (docs/fig3_reconstructions.png): binarized MNIST test digits (evenly spaced through the test set)
  beside the decoder's Bernoulli means at their deterministic codes (the code the service ships).
* Fig. 4 (docs/fig4_latent.png): a 2-d PCA projection of the deterministic count vectors of 3,000 MNIST
  test digits (a seeded random sample of t10k, binarized at 0.5 since the model is trained on binarized
  MNIST), coloured by digit, with histograms of the code total L_hat and of the sparsity logit
  log(lambda / (1 - lambda)) (a shared gate), or of how often each slot is on (slots that gate themselves).
* Fig. 5 (docs/fig5_label_counts.png): histograms of the number of labels per row in Emotions, Birds and
  CAL500 (label-less rows kept, shown as 0).

The MNIST model is the bundle `--bundle` (default models/mnist, exported from Table I's best SDLGM row),
run through onnxruntime as the service runs it; with --quick, a 30-iteration SDLGM trained and exported here.

    python benchmarks/figures.py           # make reproduce-figures
    python benchmarks/figures.py --quick   # seconds: a 30-iteration model, 300 digits
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from bundle.runtime import ModelRuntime, open_bundle  # noqa: E402
from training import datasets  # noqa: E402
from training.config import load_config  # noqa: E402
from training.export import export_trained  # noqa: E402
from training.tasks import load_task  # noqa: E402
from training.trainer import train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def mnist_bundle(bundle: Path, iterations: int, runs: Path) -> tuple[ModelRuntime, str]:
    """The bundle, or (quick) a short SDLGM run exported under runs."""
    if not bundle.is_dir():
        cfg = load_config(ROOT / "configs" / "mnist-sdlgm.yaml", {"train.iterations": iterations,
                                                                  "train.eval_every": iterations,
                                                                  "train.checkpoint_every": iterations})
        task = load_task(cfg.data)
        model, temps = train(cfg, task, runs, progress=False, evaluate_valid=False)
        bundle = runs / "bundle"
        export_trained(cfg, model, temps, iterations, task, bundle, name="mnist-quick")
    rt = open_bundle(bundle)
    shown = bundle.resolve()
    shown = shown.relative_to(ROOT) if shown.is_relative_to(ROOT) else shown
    step = rt.manifest.training.get("step")
    return rt, f"bundle {shown}, gate {rt.manifest.gate}, {step} iterations"


def fig3(model: ModelRuntime, x_all: np.ndarray, out: Path, source: str, n: int = 10) -> None:
    # evenly spaced rows: the binarized test set is grouped by digit, so its first rows are all zeros
    x = x_all[np.linspace(0, len(x_all) - 1, n).round().astype(int)]
    _, counts = model.encode(x)
    recon = model.decode(counts.astype(np.float32))
    fig, axes = plt.subplots(2, n, figsize=(n * 1.1, 2.6))
    for i in range(n):
        for row, img in ((0, x[i]), (1, recon[i])):
            axes[row, i].imshow(img.reshape(28, 28), cmap="gray_r", vmin=0, vmax=1)
            axes[row, i].axis("off")
    axes[0, 0].set_title("original", fontsize=8, loc="left")
    axes[1, 0].set_title("from the deterministic code", fontsize=8, loc="left")
    fig.suptitle(f"Fig. 3: binarized MNIST test digits and reconstructions ({source})", fontsize=8)
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)


def fig4(model: ModelRuntime, x: np.ndarray, y: np.ndarray, out: Path, source: str) -> None:
    L_hat, counts = model.encode(x)
    m = model.manifest
    c = counts.astype(np.float64)
    c -= c.mean(0)
    _, _, vt = np.linalg.svd(c, full_matrices=False)
    proj = c @ vt[:2].T
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), gridspec_kw={"width_ratios": [2, 1, 1]})
    sc = axes[0].scatter(proj[:, 0], proj[:, 1], c=y, cmap="tab10", s=4, alpha=0.7)
    axes[0].legend(*sc.legend_elements(), fontsize=6, title="digit", title_fontsize=7, loc="best")
    axes[0].set_title("PCA of the deterministic count vectors", fontsize=9)
    axes[1].hist(L_hat, bins=np.arange(L_hat.min(), L_hat.max() + 2) - 0.5)
    axes[1].set_title("code total L_hat", fontsize=9)
    if m.gate == "shared":
        lam = model.sparsity_logits(x)
        axes[2].hist(lam[:, 1] - lam[:, 0], bins=40)
        axes[2].set_title("sparsity logit log(lambda / (1 - lambda))", fontsize=9)
    else:
        on = counts.reshape(len(x), m.L0, -1).sum(2).mean(0)  # share of digits with slot l on
        axes[2].bar(np.arange(m.L0), on)
        axes[2].set_title("share of digits with each slot on", fontsize=9)
        axes[2].set_xlabel("slot")
    fig.suptitle(f"Fig. 4: {len(x)} MNIST test digits ({source})", fontsize=9)
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)


def fig5(root: Path, out: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    for ax, name in zip(axes, datasets.MULAN_SETS, strict=True):
        train, test = datasets.load_mulan(name, root)
        Y = train.Y if test is None else np.concatenate([train.Y, test.Y])
        n = Y.sum(1)
        ax.hist(n, bins=np.arange(n.max() + 2) - 0.5 if n.max() < 30 else 30)
        ax.set_title(f"{name}: {len(Y)} rows, {Y.shape[1]} labels, mean {n.mean():.1f}, "
                     f"{int((n == 0).sum())} without labels", fontsize=8)
        ax.set_xlabel("labels per row")
    fig.suptitle("Fig. 5: label counts of the Mulan sets (train and test together)", fontsize=9)
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", default=str(ROOT / "models" / "mnist"))
    p.add_argument("--iterations", type=int, default=3000)
    p.add_argument("--digits", type=int, default=3000)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=str(ROOT / "docs"))
    p.add_argument("--runs", default=str(ROOT / "runs" / "figures"))
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    if args.quick:
        args.iterations, args.digits, args.bundle = 30, 300, str(Path(args.runs) / "none")
    root = datasets.data_dir()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model, source = mnist_bundle(Path(args.bundle), args.iterations, Path(args.runs))
    fig3(model, datasets.load_binarized_mnist("test", root), out / "fig3_reconstructions.png", source)
    images, labels = datasets.load_mnist_test(root)
    rows = np.sort(np.random.default_rng(0).choice(len(images), size=min(args.digits, len(images)), replace=False))
    x = (images[rows].reshape(-1, 784) > 127).astype(np.float32)
    fig4(model, x, labels[rows], out / "fig4_latent.png", source)
    fig5(root, out / "fig5_label_counts.png")
    print(f"figures: {time.perf_counter() - t0:.0f} s on this machine ({source})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
