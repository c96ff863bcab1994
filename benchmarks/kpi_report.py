"""The report of the 5G KPI rate-distortion study: docs/kpi.md and its plot, built from the result file
of `benchmarks/kpi_rd.py` alone, so it can be rebuilt without rerunning the study.

    python benchmarks/kpi_report.py       # docs/results/kpi_rd.json -> docs/results/kpi_rd.png, docs/kpi.md

The result file is {"meta": facts of the run, "rows": one object per method and setting}. Each row names
its codec family (`method`), its role (reference, baseline or sdlgm), its display `label` and its
message format, as the codec classes of training/codecs*.py declare them: this module keeps no table of
method names. Every number of the doc comes from that file.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training.codecs import Codec, ProductQuantizer
from training.codecs_sdlgm import BundleCodec, SDLGMCodec, SDLGMLog1pCodec, SearchBundleCodec

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results" / "kpi_rd.json"
DOC = ROOT / "docs" / "kpi.md"
BASELINE_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:gray", "tab:olive",
                    "tab:cyan", "black", "goldenrod", "teal", "navy")
SDLGM_COLOURS = ("tab:red", "darkred", "tab:pink")
MARKERS = "osD^vPX<>hpd"


def is_baseline(row: dict[str, Any]) -> bool:
    return bool(row["role"] == "baseline")


def reference(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The raw float32 row."""
    return next(r for r in rows if r["role"] == "reference")


def of(rows: list[dict[str, Any]], codec: type[Codec]) -> list[dict[str, Any]]:
    """The rows of one codec family."""
    return [r for r in rows if r["method"] == codec.family]


def best_at_most(rows: list[dict[str, Any]], nbytes: float, key: str = "nrmse",
                 family: str | None = None) -> dict[str, Any] | None:
    """The baseline row with the least `key` among those with at most `nbytes` bytes per vector."""
    pool = [r for r in rows if is_baseline(r) and r["bytes_per_vector"] <= nbytes + 1e-9
            and (family is None or r["method"] == family)]
    return min(pool, key=lambda r: (r[key], r["bytes_per_vector"])) if pool else None


def bytes_to_match(rows: list[dict[str, Any]], nrmse: float) -> dict[str, Any] | None:
    """The cheapest baseline row whose NRMSE is at most `nrmse`."""
    pool = [r for r in rows if is_baseline(r) and r["nrmse"] <= nrmse]
    return min(pool, key=lambda r: (r["bytes_per_vector"], r["nrmse"])) if pool else None


def versus(a: float, b: float) -> str:
    """How SDLGM's error a compares with a baseline's b, in words."""
    if a <= b:
        return f"wins: {100 * (1 - a / b):.0f}% lower"
    return f"loses: {a / b:.2f}x the error" if b >= 0.01 else "loses (the baseline is lossless or nearly)"


def candidates(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The SDLGM points trained in the run (the search family's, then the shared-slot grid), by bytes."""
    return sorted([*of(rows, SearchBundleCodec), *of(rows, SDLGMCodec)], key=lambda r: r["bytes_per_vector"])


def valid_gap(rows: list[dict[str, Any]], r: dict[str, Any]) -> float:
    """nrmse_valid of a point over the best baseline's nrmse_valid at the same or fewer bytes."""
    best = best_at_most(rows, r["bytes_per_vector"], "nrmse_valid")
    return r["nrmse_valid"] / best["nrmse_valid"] if best and best["nrmse_valid"] > 0 else math.inf


def choose_default(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The SDLGM point furthest ahead of (or least behind) the best baseline at the same or fewer bytes,
    judged on the validation split: min over points of nrmse_valid / best baseline's nrmse_valid at <= its
    bytes. Ties go to fewer bytes."""
    return min(candidates(rows), key=lambda r: (valid_gap(rows, r), r["bytes_per_vector"]))


def goal_table(rows: list[dict[str, Any]]) -> str:
    """Issue 13's goal, B by B on the test traces: the best SDLGM point at <= B bytes against the best
    baseline at <= B, and against product quantization at <= B."""
    sizes = sorted({round(r["bytes_per_vector"]) for r in candidates(rows)})
    pq = of(rows, ProductQuantizer)
    out = ["## The goal, byte by byte (test traces)", "",
           "For each size B: the best SDLGM point at B bytes or fewer, the best baseline at B bytes or fewer (every "
           "family, the strongest forms included), and product quantization's best point at B bytes or fewer.", "",
           "| B | SDLGM at <= B | NRMSE | best baseline at <= B | NRMSE | SDLGM / best | PQ at <= B | SDLGM / PQ |",
           "|---|---|---|---|---|---|---|---|"]
    for n in sizes:
        s = [r for r in rows if r["role"] == "sdlgm" and r["bytes_per_vector"] <= n + 1e-9]
        if not s:
            continue
        a = min(s, key=lambda r: r["nrmse"])
        b = best_at_most(rows, n)
        p = min((r for r in pq if r["bytes_per_vector"] <= n + 1e-9), key=lambda r: r["nrmse"], default=None)
        out.append(f"| {n} | {a['label']} | {a['nrmse']:.4f} | " + (f"{b['label']} | {b['nrmse']:.4f} | "
                   f"{a['nrmse'] / b['nrmse']:.4f} ({'wins' if a['nrmse'] < b['nrmse'] else 'loses'}) | "
                   if b else "none | | | ") + (f"{p['nrmse']:.4f} | {a['nrmse'] / p['nrmse']:.3f} |" if p else " | |"))
    return "\n".join(out)


def styles(rows: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """Family -> (matplotlib colour, marker), in order of first appearance: reds for the SDLGM families
    (a star for one that is a single point), other colours for the rest."""
    families = list(dict.fromkeys(r["method"] for r in rows if r["role"] != "reference"))
    sdlgm = [f for f in families if any(r["method"] == f and r["role"] == "sdlgm" for r in rows)]
    out = {}
    for i, f in enumerate(sdlgm):
        single = sum(r["method"] == f for r in rows) == 1
        out[f] = (SDLGM_COLOURS[i % len(SDLGM_COLOURS)], "*" if single else "o")
    for i, f in enumerate(f for f in families if f not in sdlgm):
        out[f] = (BASELINE_COLOURS[i % len(BASELINE_COLOURS)], MARKERS[i % len(MARKERS)])
    return out


def plot(rows: list[dict[str, Any]], meta: dict[str, Any], path: Path) -> None:
    """Two panels over bytes per vector (log scale): NRMSE, and the downstream error."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(14, 7.5))
    for ax, key in zip(axes, ("nrmse", "downstream_error"), strict=True):
        for family, (colour, marker) in styles(rows).items():
            series = sorted((r for r in rows if r["method"] == family), key=lambda r: r["bytes_per_vector"])
            if family == SDLGMCodec.family:  # one line per K, over L0
                for i, K in enumerate(sorted({r["params"]["K"] for r in series})):
                    sub = [r for r in series if r["params"]["K"] == K]
                    ax.plot([r["bytes_per_vector"] for r in sub], [r[key] for r in sub], "-", color=colour,
                            marker=marker, alpha=1.0 if i == 0 else 0.55,
                            label=f"SDLGM K={K} (L0 = {', '.join(str(r['params']['L0']) for r in sub)})")
                    if key == "nrmse":
                        ax.plot([r["entropy_bits_per_vector"] / 8 for r in sub], [r[key] for r in sub], ":",
                                color=colour, marker=marker, mfc="none", alpha=1.0 if i == 0 else 0.55,
                                label=f"SDLGM K={K} placed at its code entropy")
                continue
            xs, ys = [r["bytes_per_vector"] for r in series], [r[key] for r in series]
            front = [r for r in series if r is best_at_most(series, r["bytes_per_vector"], key)]
            ax.scatter(xs, ys, color=colour, marker=marker, s=120 if marker == "*" else 30, label=family, zorder=3)
            if len(front) > 1:
                ax.plot([r["bytes_per_vector"] for r in front], [r[key] for r in front], "-", color=colour,
                        alpha=0.5)
        ax.set_xscale("log")
        ax.set_xlabel("bytes per vector (real message size; 320 = raw float32)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("NRMSE on held-out traces (0 = lossless)")
    axes[0].set_title(f"Rate-distortion, {meta['test_rows']} test windows of {meta['window']} s x "
                      f"{len(meta['kpis'])} KPIs")
    raw = reference(rows)["downstream_error"]
    axes[1].axhline(raw, color="black", ls="--", lw=1, label=f"from the raw window ({raw:.3f})")
    axes[1].axhline(meta["majority_error"], color="gray", ls=":", lw=1,
                    label=f"always 'low' ({meta['majority_error']:.3f})")
    axes[1].set_ylabel("test error, next window's DL bitrate < 1 Mbit/s")
    axes[1].set_title("Downstream: logistic regression on the reconstruction")
    for ax in axes:  # below the panels, where they hide no point
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def byte_grid(rows: list[dict[str, Any]], most: int = 16) -> str:
    """Test NRMSE at each whole number of bytes up to `most`: the best point of every family with at
    least two points there, and the best SDLGM row at the same or fewer bytes."""
    small = [r for r in rows if r["bytes_per_vector"] <= most + 1e-9]
    whole = [r for r in small if is_baseline(r) and abs(r["bytes_per_vector"] - round(r["bytes_per_vector"])) < 1e-9]
    counts: dict[str, int] = {}
    for r in whole:
        counts[r["method"]] = counts.get(r["method"], 0) + 1
    families = [f for f, n in counts.items() if n >= 2]
    sizes = sorted({round(r["bytes_per_vector"]) for r in whole if r["method"] in families})
    out = [f"## On the byte grid: test NRMSE at 1 to {most} bytes", "",
           "Each family's best point at exactly that many bytes; the SDLGM column is the best SDLGM row at the "
           "same or fewer bytes.", "",
           "| bytes | " + " | ".join(families) + " | SDLGM (best at <= bytes) |", "|---|" + "---|" * (len(families) + 1)]
    for n in sizes:
        cells = []
        for f in families:
            pool = [r["nrmse"] for r in whole if r["method"] == f and round(r["bytes_per_vector"]) == n]
            cells.append(f"{min(pool):.3f}" if pool else "")
        sdlgm = [r for r in small if r["role"] == "sdlgm" and r["bytes_per_vector"] <= n + 1e-9]
        best = min(sdlgm, key=lambda r: r["nrmse"]) if sdlgm else None
        out.append(f"| {n} | " + " | ".join(cells) + " | "
                   + (f"{best['nrmse']:.3f} ({best['label']}) |" if best else " |"))
    return "\n".join(out)


def messages(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Message format -> the families that send it, in order of first appearance."""
    out: dict[str, list[str]] = {}
    for r in rows:
        families = out.setdefault(r["message"], [])
        if r["method"] not in families:
            families.append(r["method"])
    return out


def _f(v: float | None, digits: int = 3) -> str:
    return "" if v is None else f"{v:.{digits}f}"


def _bytes(v: float) -> str:
    return f"{v:.0f}" if abs(v - round(v)) < 1e-9 else f"{v:.1f}"


def _nbytes(v: float) -> str:
    return f"{_bytes(v)} byte" + ("" if _bytes(v) == "1" else "s")


def search_recipe(meta: dict[str, Any]) -> str:
    """The search family's encoder settings and its extra candidates, as a clause of the method text."""
    r = meta.get("search_recipe")
    text = "" if not r else (f"; the encoder keeps a beam of {r['beam']} partial codes ({r['train_beam']} while "
                             f"training), then {r['sweeps']} coordinate-descent sweep(s) over the "
                             f"{r['candidates']} nearest categories per slot")
    variants = meta.get("search_variants") or []
    if variants:
        by_m: dict[int, list[str]] = {}
        for M, name in variants:
            by_m.setdefault(int(M), []).append(str(name))
        text += ("; where M has variants, the config's recipe and each variant are trained and the one of least "
                 "validation NRMSE is the point (" + "; ".join(f"M = {M}: {' / '.join(v)}"
                                                              for M, v in sorted(by_m.items())) + ")")
    return text


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any], png: Path, doc: Path) -> str:
    """docs/kpi.md: every number comes from `rows` and `meta` of the same run."""
    kpis = meta["kpis"]
    raw = reference(rows)
    bundle = of(rows, BundleCodec)[0]
    grid = candidates(rows)
    shared = sorted(of(rows, SDLGMCodec), key=lambda r: r["bytes_per_vector"])
    chosen = choose_default(rows)
    cp = chosen["params"]
    cfg = meta["config"]
    config_matches = (cfg["K"], cfg["L0"]) == (cp["K"], cp["L0"]) and (
        (cfg.get("kind") == "sdlgm-search") == (chosen["method"] == SearchBundleCodec.family))
    bundle_matches = (bundle["params"]["K"], bundle["params"]["L0"]) == (cp["K"], cp["L0"])
    rel_png = Path(os.path.relpath(Path(png).resolve(), Path(doc).resolve().parent))
    best_b = best_at_most(rows, bundle["bytes_per_vector"])
    match_b = bytes_to_match(rows, bundle["nrmse"])
    wins = [r for r in [*grid, bundle] if (b := best_at_most(rows, r["bytes_per_vector"])) and r["nrmse"] <= b["nrmse"]]
    families = sorted({r["method"] for r in rows if is_baseline(r)})
    reachable = [f for f in families if best_at_most(rows, bundle["bytes_per_vector"], family=f)]
    beaten_by_bundle = [f for f in reachable if (b := best_at_most(rows, bundle["bytes_per_vector"], family=f))
                        and bundle["nrmse"] <= b["nrmse"]]
    L: list[str] = []
    add = L.append
    add("# 5G KPI compression: rate, distortion and a downstream task")
    add("")
    took = (f"in {meta['seconds'] / 60:.1f} minutes" if not meta.get("resumed_rows") else
            f"(resumed: {meta['resumed_rows']} rows from the run's cache; the fits and trainings took "
            f"{meta['fit_seconds_total'] / 60:.0f} minutes in all)")
    add(f"Generated by `make reproduce-kpi` (`python benchmarks/kpi_rd.py`) {took} "
        "on this machine (2 shared CPU cores, one thread per process); every number below is in "
        "`docs/results/kpi_rd.json` and comes from that one run" + (
            f" (its {meta['earlier_rows']} baseline and shared-slot rows, marked `measured_by` there, were measured "
            "by an earlier run of the same plan and code and taken from its results with `--baselines-from`; "
            "the search family's rows are this run's)" if meta.get("earlier_rows") else "") + ". Do not edit this file by hand: rerun the "
        "command, or `make kpi-report` (`python benchmarks/kpi_report.py`) to rebuild it from that file." + (" **This is a --quick run: tiny grid, few rows, meaningless numbers.**" if meta["quick"] else ""))
    add("")
    add("## The answer first")
    add("")
    bp = bundle["params"]
    add(f"- **The committed default** (`models/kpi5g`, {bp.get('kind') or 'sdlgm'}, K = {bp['K']}, L0 = {bp['L0']}, "
        f"{bp['iterations']} iterations, run through onnxruntime as the service runs it) sends **{bundle['bytes_per_vector']:.1f} "
        f"bytes per vector** (raw float32: {raw['bytes_per_vector']:.0f}) at **NRMSE {bundle['nrmse']:.3f}**.")
    if best_b is not None:
        add(f"- At the same or fewer bytes the best baseline is **{best_b['label']}** "
            f"({_nbytes(best_b['bytes_per_vector'])}, NRMSE {best_b['nrmse']:.3f}): the default "
            f"{versus(bundle['nrmse'], best_b['nrmse'])}.")
    if match_b is not None:
        add(f"- The cheapest baseline that reaches the default's error is **{match_b['label']}** at "
            f"{_nbytes(match_b['bytes_per_vector'])} per vector "
            f"({bundle['bytes_per_vector'] / max(match_b['bytes_per_vector'], 1e-9):.1f}x fewer bytes).")
    add(f"- Of the {len(reachable)} baseline families with a point at the same or fewer bytes, the default beats "
        f"{len(beaten_by_bundle)}" + (f" ({', '.join(beaten_by_bundle)})" if beaten_by_bundle else "")
        + f"; the other {len(families) - len(reachable)} need more bytes than the default for any point.")
    partial_wins = [f"{r['label']} beats {', '.join(fs)}" for r in grid if (fs := [
        f for f in families if (b := best_at_most(rows, r["bytes_per_vector"], family=f)) and r["nrmse"] <= b["nrmse"]])]
    add("- Where the SDLGM wins at equal bytes: " + ("; ".join(partial_wins) if partial_wins else "nowhere")
        + ". Where it loses: everywhere else; see the tables below for by how much.")
    add("- SDLGM points that beat every baseline at the same or fewer bytes: "
        + (", ".join(f"{r['label']} ({r['bytes_per_vector']:.1f} bytes)" for r in wins) if wins else "**none**") + ".")
    add(f"- Downstream (is the next 10 s below 1 Mbit/s?): from the raw window the error is {raw['downstream_error']:.3f}; "
        f"from the default's reconstruction {bundle['downstream_error']:.3f}, from its code "
        f"{_f(bundle['downstream_error_from_code'])}; always answering 'low' gives {meta['majority_error']:.3f}.")
    add("")
    add(goal_table(rows))
    add("")
    add(f"![rate-distortion]({rel_png.as_posix()})")
    add("")
    add("Left: NRMSE against the real message size; each family's line joins its best points. Dotted red: "
        "the same SDLGM codes placed at their entropy (bits / 8), the size a better format for the same "
        "codes could approach. Right: the downstream error from each method's reconstruction.")
    add("")
    # ---- data
    add("## Data")
    add("")
    ms = meta["missing_share"]
    add(f"- Vectors: windows of {meta['window']} consecutive seconds of {len(kpis)} KPIs ({', '.join(kpis)}), "
        f"D = {meta['D']}, time-major: the default vector of the service (one POST per {meta['window']} s). "
        "They are the serving cell's radio quality, the throughput and the mobility, logged every second; "
        "share of logged rows missing over all 83 traces: "
        + ", ".join(f"{k} {100 * v:.1f}%" for k, v in ms.items() if k in kpis)
        + ". Left out: " + ", ".join(f"{k} ({100 * v:.0f}% missing)" for k, v in ms.items() if k not in kpis)
        + " (ping statistics and the neighbour cell's RSRP and RSRQ), the categorical columns (operator, "
        "cell ids, network mode, state) and the position.")
    add("- Missing values: a value written `-` and a second the logger skipped are filled from the previous "
        "second when the gap is at most 5 s; a longer gap cuts the trace, no window spans a cut, and windows "
        "that still hold a missing value are dropped (`training.datasets.make_windows`).")
    add(f"- Split by trace file (seed 0): {meta['train_traces']} train, {meta['valid_traces']} valid, "
        f"{meta['test_traces']} test traces, no trace in two parts; {meta['train_rows']} train windows "
        f"(stride 2 s), {meta['valid_rows']} valid and {meta['test_rows']} test windows (not overlapping). "
        "Standardization (mean, std per feature) and every codec are fitted on train only; the SDLGM default "
        "is chosen on valid; every figure below is on test.")
    add(f"- Downstream target: for each window, is the **next** {meta['window']} s window's mean DL bitrate below "
        f"{meta['threshold_kbps']:.0f} kbit/s? Pairs are windows of {2 * meta['window']} s cut by the same function, "
        f"so a pair never spans a gap or two traces: {meta['train_pairs']} train pairs (from the train traces), "
        f"{meta['test_pairs']} test pairs. The share of 'low' is {100 * meta['train_low_share']:.0f}% in train "
        f"and {100 * meta['test_low_share']:.0f}% in test"
        + (" (the test traces idle more)" if meta["test_low_share"] > meta["train_low_share"] else "")
        + ". A logistic regression "
        "(standardized inputs) is trained on each method's reconstruction of the train windows and tested on "
        "its reconstruction of the test windows; for the sparse codes also on the code itself (counts or "
        f"values as a K-vector). Reference: raw window {raw['downstream_error']:.3f}, the current window's own "
        f"status {meta['persistence_error']:.3f}, always 'low' {meta['majority_error']:.3f}.")
    add("")
    # ---- accounting
    add("## How rate and distortion are measured")
    add("")
    add("| methods | message per vector |")
    add("|---|---|")
    for message, names in messages(rows).items():
        add(f"| {'; '.join(names)} | {message} |")
    add("")
    add("Quantizer ranges are per column, the clipping quantile (0, 0.1%, 1% or 5%) chosen on the train data. "
        "Bytes are whole bytes per vector: each vector is its own message, as with `/encode`. The dictionary "
        f"(K atoms) is learned on {meta['omp_rows']} train windows by alternating scikit-learn's OMP at L0 "
        f"non-zeros and the least-squares dictionary ({meta['omp_iterations']} rounds). The k-sparse "
        f"autoencoder and the shared-slot SDLGM grid use `configs/kpi5g-shared.yaml`'s MLP sizes and "
        f"{meta['iterations']} iterations (batch 100, Adam 1e-3 with cosine decay to 1e-4). The search family's "
        f"points (`configs/kpi5g.yaml` at each M) train {meta.get('search_iterations')} iterations and keep the "
        "state of the least validation error (checked every 250), then are exported and measured through "
        "onnxruntime" + search_recipe(meta) + "; the committed bundle was trained "
        f"{bp['iterations']} iterations. The SDLGM code is the deterministic code the service sends. "
        f"FSQ uses the same MLP sizes, {meta['fsq_iterations']} iterations with the same batch and schedule, "
        "and levels of 8 (3 bits) per dimension, one smaller power of two taking the remaining bits, so that its "
        "index fills its whole bytes. OPQ and RQ are faiss's (8-bit codebooks), trained on "
        f"{meta['faiss_rows']} random train windows; OPQ's rotation starts at PQ's grouping of each KPI's seconds "
        f"and runs {meta['opq_iterations']} rounds; RQ's (training, encoding) beam widths are chosen on validation "
        f"for each M from {', '.join(str(tuple(b)) for b in meta['rq_beams'])}. LSQ is faiss's "
        "LocalSearchQuantizer with its defaults, on the same rows"
        + (f", at {', '.join(str(b) for b in meta['lsq_bytes'])} bytes" if "lsq_bytes" in meta else "") + ".")
    chosen_rows = [r for r in rows if r.get("chosen_on_valid")]
    if chosen_rows:
        add("")
        add("Chosen on validation (validation NRMSE of each candidate): " + "; ".join(
            f"{r['label']} from " + ", ".join(f"{k} {v:.3f}" for k, v in r["chosen_on_valid"].items())
            for r in chosen_rows) + ".")
    add("")
    add("Entropy (bits per vector): the plug-in entropy of each symbol (SDLGM: each of the K counts; PCA: each "
        "coefficient; PQ: each index; ...) over the test vectors, summed over symbols: what an arithmetic coder "
        "with one static model per symbol would approach, ignoring the cost of the model. It is optimistic "
        f"(fitted on the test set itself) and, for symbols with many distinct values (float16, float32) on "
        f"{meta['test_rows']} vectors, biased low.")
    add("")
    add("NRMSE = sqrt(mean over test values of (x - x_hat)^2 / std_train^2); RMSE per KPI in original units "
        "over all seconds of the window.")
    add("")
    # ---- results table
    add("## All results (test traces)")
    add("")
    add("| method | bytes | entropy bits | NRMSE | NRMSE valid | downstream error (reconstruction) | (code) | fit s |")
    add("|---|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (r["bytes_per_vector"], r["nrmse"])):
        add(f"| {r['label']} | {r['bytes_per_vector']:.1f} | {r['entropy_bits_per_vector']:.1f} | {r['nrmse']:.3f} | "
            f"{r['nrmse_valid']:.3f} | {r['downstream_error']:.3f} | {_f(r['downstream_error_from_code'])} | "
            f"{r['fit_seconds']:.0f} |")
    add("")
    add(byte_grid(rows))
    add("")
    # ---- reading
    add("## Reading the curve: each SDLGM point against the baselines")
    add("")
    add("| SDLGM point | bytes | entropy bits | NRMSE | best baseline at <= bytes | its NRMSE | SDLGM | "
        "cheapest baseline as good | downstream error | best baseline's at <= bytes |")
    add("|---|---|---|---|---|---|---|---|---|---|")
    for r in [*grid, *(x for x in rows if x["role"] == "sdlgm" and x["method"] != SDLGMCodec.family)]:
        b, m = best_at_most(rows, r["bytes_per_vector"]), bytes_to_match(rows, r["nrmse"])
        d = best_at_most(rows, r["bytes_per_vector"], "downstream_error")
        add(f"| {r['label']} | {r['bytes_per_vector']:.1f} | {r['entropy_bits_per_vector']:.1f} | {r['nrmse']:.3f} | "
            + (f"{b['label']} ({_bytes(b['bytes_per_vector'])}) | {b['nrmse']:.3f} | {versus(r['nrmse'], b['nrmse'])} | "
               if b else "none | | | ")
            + (f"{m['label']} ({_nbytes(m['bytes_per_vector'])}) | " if m else "none | ")
            + f"{r['downstream_error']:.3f} | " + (f"{d['downstream_error']:.3f} ({d['label']}) |" if d else "none |"))
    add("")
    add(summary_lines(rows, grid, meta["test_pairs"]))
    add("")
    # ---- default per family and per KPI
    add(f"## At the default's {bundle['bytes_per_vector']:.1f} bytes, family by family")
    add("")
    add("| family | best point at <= bytes | bytes | NRMSE | default's NRMSE against it | downstream error |")
    add("|---|---|---|---|---|---|")
    for f in families:
        b = best_at_most(rows, bundle["bytes_per_vector"], family=f)
        if b is None:  # the family's cheapest point, which costs more
            b = min((r for r in rows if r["method"] == f), key=lambda r: (r["bytes_per_vector"], r["nrmse"]))
            name = f"none; its cheapest: {b['label']}"
        else:
            name = b['label']
        add(f"| {f} | {name} | {_bytes(b['bytes_per_vector'])} | {b['nrmse']:.3f} | "
            f"{versus(bundle['nrmse'], b['nrmse'])} | {b['downstream_error']:.3f} |")
    add("")
    add("RMSE per KPI in original units (dB, dBm, kbit/s, km/h):")
    add("")
    shown = [bundle, chosen, *(b for f in families if (b := best_at_most(rows, bundle["bytes_per_vector"], family=f)))]
    add("| method | bytes | " + " | ".join(kpis) + " | negative bitrates |")
    add("|---|---|" + "---|" * len(kpis) + "---|")
    seen: set[str] = set()
    for r in shown:
        if r['label'] in seen:
            continue
        seen.add(r['label'])
        add(f"| {r['label']} | {r['bytes_per_vector']:.1f} | " + " | ".join(
            f"{r['rmse_per_kpi'][k]:.{0 if 'bitrate' in k else 2}f}" for k in kpis)
            + f" | {100 * r['negative_bitrate_share']:.1f}% |")
    add("")
    # ---- default choice
    add("## The default model's point")
    add("")
    add("Rule: among the SDLGM grid points, the one whose validation NRMSE is closest to (or furthest below) the "
        "best baseline's validation NRMSE at the same or fewer bytes, i.e. where the sparse code is most "
        "competitive for the bytes it costs; ties to fewer bytes. The test set plays no part in the choice.")
    add("")
    cb = best_at_most(rows, chosen["bytes_per_vector"], "nrmse_valid")
    valid = [r["nrmse_valid"] for r in shared] or [1.0]
    flat = max(valid) < 1.15 * min(valid)
    add(f"Chosen: **{chosen['label']}** ({chosen['bytes_per_vector']:.1f} bytes, valid NRMSE "
        f"{chosen['nrmse_valid']:.3f} against {_f(cb['nrmse_valid'] if cb else None)} for {cb['label'] if cb else 'none'}; "
        f"test NRMSE {chosen['nrmse']:.3f}, downstream error {chosen['downstream_error']:.3f}).")
    add("")
    add("Validation ratios to the best baseline at the same or fewer bytes, all grid points: " + ", ".join(
        f"{r['label']} {r['nrmse_valid'] / b['nrmse_valid']:.2f}" for r in grid
        if (b := best_at_most(rows, r["bytes_per_vector"], "nrmse_valid")) and b["nrmse_valid"] > 0) + ". "
        "Why this rule: the target is to beat the baselines at equal bytes, so the default is the point "
        + ("closest to it" if not wins else "furthest ahead") + "; "
        + (f"the shared-slot SDLGM's error moves little with more non-zeros (NRMSE {min(valid):.3f} "
           f"to {max(valid):.3f} on valid over its grid), so a larger L0 buys bytes, "
           "not accuracy. " if flat and shared else "")
        + "The committed bundle is "
        f"that configuration trained for the config's {cfg['iterations']} iterations, measured above through "
        "onnxruntime.")
    add("")
    add(f"`configs/kpi5g.yaml` ({cfg.get('kind', 'sdlgm')}, K = {cfg['K']}, L0 = {cfg['L0']}, "
        f"{cfg['iterations']} iterations) "
        + ("matches this point" if config_matches else "**does not match this point**")
        + f"; the committed bundle (K = {bp['K']}, L0 = {bp['L0']}) "
        + ("is that configuration trained for the config's iterations." if bundle_matches
           else "**is another point: regenerate it with `make default-model`.**"))
    add("")
    verdict_rows = []
    for f in families:
        b = best_at_most(rows, bundle["bytes_per_vector"], family=f)
        if b is not None and bundle["nrmse"] > b["nrmse"]:
            verdict_rows.append(f"{b['label']} ({_nbytes(b['bytes_per_vector'])}, NRMSE {b['nrmse']:.3f}: "
                                f"the default's error is {bundle['nrmse'] / max(b['nrmse'], 1e-12):.2f}x"
                                + (")" if b["nrmse"] > 0 else ", lossless)"))
    near = [r for f in families if best_at_most(rows, bundle["bytes_per_vector"], family=f) is None
            and (r := min((x for x in rows if x["method"] == f), key=lambda x: (x["bytes_per_vector"], x["nrmse"])))
            and r["bytes_per_vector"] <= bundle["bytes_per_vector"] + 1]
    near_text = (" Within one byte above it: " + "; ".join(
        f"{r['label']} ({_nbytes(r['bytes_per_vector'])}, NRMSE {r['nrmse']:.3f}: {versus(bundle['nrmse'], r['nrmse'])})"
        for r in near) + ".") if near else ""
    if verdict_rows:
        add(f"Target check: at its {bundle['bytes_per_vector']:.1f} bytes the default does **not** beat every baseline "
            "at equal bytes. It loses to: " + "; ".join(verdict_rows) + "." + near_text)
    else:
        add(f"Target check: at its {bundle['bytes_per_vector']:.1f} bytes the default beats every baseline at "
            "the same or fewer bytes." + near_text)
    add("")
    # ---- weaknesses
    add("## Known weaknesses, measured")
    add("")
    lg = of(rows, SDLGMLog1pCodec)
    same = [r for r in shared if lg and (r["params"]["K"], r["params"]["L0"]) == (lg[0]["params"]["K"], lg[0]["params"]["L0"])]
    add(f"- Heavy-tailed bitrates: DL bitrate has a train std of {meta['std_dl_bitrate']:.0f} kbit/s and a "
        f"median of {meta['median_dl_bitrate']:.0f}, and reaches {meta['max_dl_bitrate']:.0f} (beyond float16's "
        "65,504, hence float16 of the standardized vector). The Gaussian decoder spreads its error there and gives "
        f"negative bitrates: {100 * bundle['negative_bitrate_share']:.1f}% of the default's reconstructed "
        "bitrate values are below 0. Clipping them at 0 after decoding costs nothing and gives NRMSE "
        f"{bundle['nrmse_bitrates_clipped']:.4f} (against {bundle['nrmse']:.4f}): it removes an implausible value, "
        "not the error.")
    if lg and same:
        a, b2 = lg[0], same[0]
        add(f"- log1p of the bitrates before standardization (trained in this run at K = {a['params']['K']}, "
            f"L0 = {a['params']['L0']}, {a['params']['iterations']} iterations; not shipped: it would live inside "
            f"the ONNX graphs): NRMSE {a['nrmse']:.3f} against {b2['nrmse']:.3f} without, DL bitrate RMSE "
            f"{a['rmse_per_kpi']['DL_bitrate']:.0f} against {b2['rmse_per_kpi']['DL_bitrate']:.0f} kbit/s, "
            f"negative bitrates {100 * a['negative_bitrate_share']:.1f}% against "
            f"{100 * b2['negative_bitrate_share']:.1f}%, downstream error {a['downstream_error']:.3f} against "
            f"{b2['downstream_error']:.3f}.")
    ratio = bundle["bytes_per_vector"] * 8 / max(bundle["entropy_bits_per_vector"], 1e-9)
    others = [b for f in families if (b := best_at_most(rows, bundle["bytes_per_vector"], family=f))
              and b["entropy_bits_per_vector"] > 0]
    add(f"- The format against the information in the code: the default spends {bundle['bytes_per_vector'] * 8:.0f} "
        f"bits per vector on codes whose factorized test entropy is {bundle['entropy_bits_per_vector']:.0f} bits "
        f"({ratio:.2f}x) in the fixed-length enum format. The range format (the static model in the manifest) "
        "approaches the model's own entropy estimate, in whole 32-bit words per message; on one vector per "
        "message the fixed-length format is the smaller"
        + (", and the baselines much less (format bits over entropy: " + ", ".join(
            f"{b['label']} {b['bytes_per_vector'] * 8 / b['entropy_bits_per_vector']:.1f}x" for b in others) + ")"
           if others else "") + ". Even at its entropy the SDLGM point is "
        + ("behind" if (e := best_at_most(rows, bundle["entropy_bits_per_vector"] / 8)) and e["nrmse"] < bundle["nrmse"]
           else "not behind") + " the best baseline at that many bytes"
        + (f" ({e['label']}, NRMSE {e['nrmse']:.3f})." if e else "."))
    add("")
    return "\n".join(L) + "\n"


def summary_lines(rows: list[dict[str, Any]], grid: list[dict[str, Any]], n_test_pairs: int) -> str:
    """Where the SDLGM wins and loses, in sentences."""
    families = sorted({x["method"] for x in rows if is_baseline(x)})
    out = []
    for r in grid:
        beaten = [f for f in families
                  if (b := best_at_most(rows, r["bytes_per_vector"], family=f)) and r["nrmse"] <= b["nrmse"]]
        out.append(f"{r['label']} ({r['bytes_per_vector']:.1f} bytes) beats at equal bytes "
                   + (", ".join(beaten) if beaten else "no family"))
    ratios = [r["nrmse"] / b["nrmse"] for r in grid if (b := best_at_most(rows, r["bytes_per_vector"]))]
    raw = reference(rows)["downstream_error"]
    se = math.sqrt(raw * (1 - raw) / max(n_test_pairs, 1))
    close = [r for r in grid if abs(r["downstream_error"] - raw) <= 2 * se]
    better = [r for r in grid if (d := best_at_most(rows, r["bytes_per_vector"], "downstream_error"))
              and r["downstream_error"] <= d["downstream_error"]]
    text = ("In words, on distortion: " + "; ".join(out) + ". Across the grid the SDLGM's NRMSE is "
            + (f"{min(ratios):.2f}x to {max(ratios):.2f}x that of the best baseline at the same or fewer bytes"
               if ratios else "not comparable")
            + f", and it moves little with L0 (from {min(r['nrmse'] for r in grid):.3f} to "
            f"{max(r['nrmse'] for r in grid):.3f}) while the bytes grow with the non-zeros.")
    text += (f"\n\nOn the downstream task the differences are small against the noise of {n_test_pairs} test pairs "
             f"(standard error of an error rate near {raw:.2f}: {se:.3f}): {len(close)} of {len(grid)} SDLGM grid "
             f"points are within two standard errors of the raw window's {raw:.3f}, and {len(better)} of "
             f"{len(grid)} are at least as good as the best baseline at the same or fewer bytes"
             + (f" ({', '.join(r['label'] for r in better)})" if better else "")
             + " (the best of many noisy baseline figures, so that comparison favours the baselines).")
    return text




def write(results: dict[str, Any], png: Path, doc: Path) -> None:
    """The plot and the doc of one result file's content ({"meta": ..., "rows": [...]})."""
    rows, meta = results["rows"], results["meta"]
    png.parent.mkdir(parents=True, exist_ok=True)
    plot(rows, meta, png)
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(markdown(rows, meta, png, doc))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default=str(RESULTS), help="the study's result file (kpi_rd.json)")
    p.add_argument("--png", help="the plot to write (default: the result file's name with .png)")
    p.add_argument("--doc", default=str(DOC), help="the markdown to write")
    args = p.parse_args(argv)
    path = Path(args.results)
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        p.error(f"cannot read {path}: {e}")
    if not isinstance(results, dict) or not {"meta", "rows"} <= set(results):
        p.error(f"{path} holds no 'meta' and 'rows': it was written by another version; rerun benchmarks/kpi_rd.py")
    png, doc = Path(args.png) if args.png else path.with_suffix(".png"), Path(args.doc)
    write(results, png, doc)
    print(f"kpi_report: wrote {png}, {doc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
