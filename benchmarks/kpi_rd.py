"""Rate and distortion of 5G KPI windows: the SDLGM against the codecs an operator would use instead,
every figure measured in one run on the held-out traces (`make reproduce-kpi`).

    python benchmarks/kpi_rd.py            # the full grid: about 30 minutes on 2 shared cores, by load
    python benchmarks/kpi_rd.py --quick --results /tmp/rd --doc /tmp/rd/kpi.md   # tiny grid, seconds
    python benchmarks/kpi_rd.py --runs runs/kpi   # resumable: rows land in runs/kpi/rows.jsonl as measured

With --runs, every measured row is appended to <runs>/rows.jsonl under a key naming its codec and
arguments, and a rerun skips the rows already there (delete the file to measure everything again).

Writes <results>/kpi_rd.json: {"meta": facts of the run, "rows": one object per method and setting:
method, label, role, message, params, bytes_per_vector, entropy_bits_per_vector, nrmse, rmse_per_kpi,
downstream_error, ...}; then `kpi_report` turns that file alone into <results>/kpi_rd.png (the
rate-distortion curves) and the doc (default docs/kpi.md), never edited by hand. This module owns the
plan and the run; the codecs live in training/codecs*.py.

Data: the windows of configs/kpi5g.yaml (split by trace file, standardization from train). Rate: the
bytes of each vector's message (for the SDLGM codes the service's `enum` format, the message /encode
sends), and the factorized empirical entropy of the symbols on the test set beside it. The SDLGM points:
the default's family (model/search.py, configs/kpi5g.yaml) at M = 1..16 bytes, each trained, exported and
measured through onnxruntime as the service runs it, and the paper's shared-slot SDLGM over a (K, L0) grid
(configs/kpi5g-shared.yaml). Distortion: RMSE per KPI in original units
and NRMSE = sqrt(mean((x - x_hat)^2 / std_train^2)). Downstream: whether the next window's mean DL
bitrate falls below 1 Mbit/s, predicted by a logistic regression from the reconstruction (trained on
reconstructed training windows), from the code itself for the sparse codes, and from the raw window.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import kpi_report
import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from model import sdlgm
from model.sdlgm import SDLGM
from training import codecs, codecs_faiss, codecs_fsq, datasets
from training.bundle_eval import rmse_per_kpi
from training.codecs_sdlgm import BundleCodec, Log1pBitrates, SDLGMCodec, SDLGMLog1pCodec, SearchBundleCodec
from training.config import RunConfig, load_config, saved_config
from training.datasets import safe_std
from training.export import export_trained
from training.loop import read_checkpoint
from training.tasks import Task, kpi_task
from training.trainer import CHECKPOINT, train

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "kpi5g.yaml"  # the default: the data, and the search family's recipe
SHARED = ROOT / "configs" / "kpi5g-shared.yaml"  # the paper's shared-slot SDLGM: its grid, and the MLP sizes
BUNDLE = ROOT / "models" / "kpi5g"
TARGET_KPI = "DL_bitrate"
THRESHOLD_KBPS = 1000.0  # "low": the next window's mean DL bitrate is below 1 Mbit/s
BITRATES = ("DL_bitrate", "UL_bitrate")
LEFT_OUT = ("PINGAVG", "NRxRSRP", "NRxRSRQ")  # numeric per-second columns not in the vectors


# ------------------------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class Plan:
    """What one run measures. Grids are (K, L0) for the sparse codes, (components, bits) for PCA,
    (M, bits) for product quantization, M (bytes) for OPQ and RQ, bytes for FSQ."""

    sdlgm: tuple[tuple[int, int], ...]
    iterations: int  # shared-slot SDLGM and k-sparse AE training steps
    search: tuple[int, ...]  # bytes M of the search family's points
    search_iterations: int
    lsq: tuple[int, ...]
    ksae: tuple[tuple[int, int], ...]
    omp: tuple[tuple[int, int], ...]
    omp_rows: int  # training rows the dictionary is learned on
    omp_iterations: int
    uniform_bits: tuple[int, ...]
    pca: tuple[tuple[int, int], ...]
    kmeans_bits: tuple[int, ...]
    pq: tuple[tuple[int, int], ...]
    opq: tuple[int, ...]
    opq_iterations: int
    rq: tuple[int, ...]
    rq_beams: tuple[tuple[int, int], ...]  # (training, encoding) beam widths; validation chooses one per M
    faiss_rows: int  # training rows OPQ and RQ learn from
    fsq: tuple[int, ...]
    fsq_iterations: int
    log1p: bool  # also train the SDLGM on log1p bitrates at the config's (K, L0)
    rows: int | None = None  # keep this many train / valid / test rows and pairs (quick runs)
    # more candidates of the search family at some M, each (M, config overrides) on top of configs/kpi5g.yaml
    # at search_iterations; the point at that M is the candidate of least validation NRMSE
    search_variants: tuple[tuple[int, tuple[tuple[str, Any], ...]], ...] = ()


GRID = tuple((K, L0) for K in (64, 256) for L0 in (2, 4, 8, 16))
BYTES = (1, 2, 3, 4, 6, 8, 12, 16)  # the grid of the one-byte-per-codebook quantizers
FULL = Plan(sdlgm=GRID, iterations=3000, search=BYTES, search_iterations=3000, lsq=BYTES, ksae=GRID[:4], omp=GRID, omp_rows=3000, omp_iterations=4,
            uniform_bits=(1, 2, 3, 4, 8),
            pca=((2, 8), (4, 8), (8, 8), (16, 8), (32, 8), (4, 4), (8, 4), (16, 4), (32, 4), (64, 4)),
            kmeans_bits=(8, 12), pq=tuple((M, 8) for M in BYTES), opq=BYTES, opq_iterations=10, rq=BYTES,
            rq_beams=((1, 1), (8, 8), (16, 64)), faiss_rows=20_000, fsq=BYTES, fsq_iterations=6000, log1p=True,
            search_variants=((1, (("model.candidates", 64),)), (1, (("train.iterations", 30_000),)),
                             (2, (("model.candidates", 64), ("model.sweeps", 2))), (2, (("train.iterations", 9000),)),
                             (2, (("train.iterations", 30_000),))))
QUICK = Plan(sdlgm=((16, 2),), iterations=20, search=(2,), search_iterations=20, lsq=(2,), ksae=((16, 2),), omp=((16, 2),), omp_rows=300, omp_iterations=1,
             uniform_bits=(2,), pca=((4, 4),), kmeans_bits=(4,), pq=((4, 4),), opq=(2,), opq_iterations=2,
             rq=(2,), rq_beams=((1, 1), (2, 4)), faiss_rows=600, fsq=(2,), fsq_iterations=20, log1p=True, rows=600)


# ------------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class NextWindow:
    """Pairs of consecutive windows of one trace: the current window and a status of the next one."""

    x: np.ndarray  # float32 (N, window * n_kpi), the current window in raw units, time-major
    target: np.ndarray  # float64 (N,), the next window's mean of the target KPI
    trace: np.ndarray  # (N,) name of the trace each pair comes from

    @property
    def low(self) -> np.ndarray:
        """The label: the next window's mean DL bitrate is below THRESHOLD_KBPS."""
        return self.target < THRESHOLD_KBPS

    def head(self, n: int | None) -> NextWindow:
        return self if n is None else NextWindow(self.x[:n], self.target[:n], self.trace[:n])


def next_window_pairs(traces: Sequence[datasets.Trace], window: int, stride: int, kpi_index: int,
                      max_gap: int = 5) -> NextWindow:
    """Windows of 2 * window seconds cut by `datasets.make_windows` (same gap filling, same cuts at long
    gaps, NaN windows dropped), split into the current window and the next: a pair never spans a cut
    or two traces, so a split by trace keeps every pair on its side."""
    n_kpi = traces[0].values.shape[1] if traces else 1
    width = window * n_kpi
    xs, ys, names = [np.empty((0, width), np.float32)], [np.empty(0)], [np.empty(0, dtype=object)]
    for tr in traces:
        both = datasets.make_windows(tr, 2 * window, stride, max_gap)  # (N, 2 * width)
        nxt = both[:, width:].reshape(len(both), window, n_kpi)[:, :, kpi_index]  # (N, window)
        xs.append(both[:, :width])
        ys.append(nxt.mean(1, dtype=np.float64))
        names.append(np.full(len(both), tr.name, dtype=object))
    return NextWindow(np.concatenate(xs), np.concatenate(ys), np.concatenate(names))


@dataclass(frozen=True)
class Data:
    cfg: RunConfig  # configs/kpi5g.yaml: the windows and the default's recipe
    split: datasets.KpiSplit
    train_pairs: NextWindow  # from the train traces
    test_pairs: NextWindow  # from the test traces
    missing_share: dict[str, float]  # share of logged rows missing, per KPI used and per LEFT_OUT column

    @property
    def task(self) -> Task:
        return kpi_task(self.split)


def load_data(cfg: RunConfig, rows: int | None = None) -> Data:
    root = datasets.data_dir(cfg.data.dir)
    kpis = tuple(cfg.data.kpis) if cfg.data.kpis else datasets.DEFAULT_KPIS
    split = datasets.load_kpi_split(root, kpis=kpis, window=cfg.data.window, stride=cfg.data.stride,
                                    seed=cfg.train.seed)
    if rows is not None:  # quick runs: a random subset of train rows, the first valid and test rows
        keep = np.random.default_rng(0).permutation(len(split.train))[:rows]
        split = replace(split, train=split.train[keep], valid=split.valid[:rows], test=split.test[:rows])
    columns = (*kpis, *(c for c in LEFT_OUT if c not in kpis))
    traces = datasets.load_kpi_traces(root, columns)
    values = np.concatenate([t.values for t in traces])
    missing = {c: float(np.isnan(values[:, i]).mean()) for i, c in enumerate(columns)}
    by_name = {t.name: datasets.Trace(t.name, t.seconds, t.values[:, : len(kpis)]) for t in traces}
    w, k = cfg.data.window, kpis.index(TARGET_KPI)
    return Data(cfg, split,
                next_window_pairs([by_name[n] for n in split.train_traces], w, w, k).head(rows),
                next_window_pairs([by_name[n] for n in split.test_traces], w, w, k).head(rows), missing)


# ------------------------------------------------------------------------------------- SDLGM


def train_sdlgm(data: Data, K: int, L0: int, iterations: int, runs: Path,
                transform: Log1pBitrates | None = None) -> SDLGM:
    """configs/kpi5g-shared.yaml with this K, L0 and number of steps, trained in-process by the trainer."""
    n = iterations
    cfg = load_config(SHARED, {"model.K": K, "model.L0": L0, "train.iterations": n, "train.eval_every": n,
                               "train.checkpoint_every": n})
    task = data.task
    if transform is not None:  # standardization refitted on the transformed training windows
        tr, va, te = (transform.forward(a).astype(np.float32) for a in (task.train, task.valid, task.test))
        std = tr.std(0, dtype=np.float64)
        task = replace(task, train=tr, valid=va, test=te, mean=tr.mean(0, dtype=np.float64).astype(np.float32),
                       std=safe_std(std).astype(np.float32))
    name = f"K{K}-L0{L0}" + ("-log1p" if transform else "")
    model, _ = train(cfg, task, runs / name, progress=False, evaluate_valid=False)
    return sdlgm.FAMILY.of(model)


# ------------------------------------------------------------------------------------ measurement


def search_config(M: int, iterations: int, rows: int | None, overrides: Sequence[tuple[str, Any]] = ()) -> RunConfig:
    """configs/kpi5g.yaml with M bytes and these overrides (train.iterations among them: it replaces
    `iterations`)."""
    over: dict[str, object] = {"model.M": M, "train.iterations": iterations, **dict(overrides)}
    n = int(over["train.iterations"])  # type: ignore[call-overload]
    over["train.eval_every"] = max(1, min(250, n // 4))
    if rows is not None:  # quick runs: faiss sees what there is
        over["model.init_rows"] = rows
    return load_config(CONFIG, over)


def variant_name(overrides: Sequence[tuple[str, Any]]) -> str:
    """A short name of a candidate's overrides ("" for the config's own recipe)."""
    return ", ".join(f"{k.split('.')[-1]} {v}" for k, v in overrides)


FIT = "fit.json"  # beside a search point's checkpoint: the config it was trained and exported with, and the time


def train_search(data: Data, M: int, iterations: int, runs: Path, rows: int | None,
                 overrides: Sequence[tuple[str, Any]] = ()) -> tuple[Path, float]:
    """configs/kpi5g.yaml with M bytes: trained (best validation state kept), exported as a bundle; returns
    the bundle and the seconds of training and export. A point already trained and exported with the same
    config under `runs` is reused (with its recorded seconds); an interrupted one resumes from its checkpoint."""
    cfg = search_config(M, iterations, rows, overrides)
    tag = "".join(f"-{k.split('.')[-1]}{v}" for k, v in overrides)
    run, out = runs / f"search-M{M}{tag}", runs / f"search-M{M}{tag}-bundle"
    dumped = cfg.model_dump(mode="json", exclude={"name", "version"})  # a new version of the default: same point
    fit = run / FIT
    if fit.exists() and (out / "manifest.json").exists():
        done = json.loads(fit.read_text())
        if {k: v for k, v in done["config"].items() if k not in ("name", "version")} == dumped:
            return out, float(done["seconds"])
    ck = run / CHECKPOINT
    again = ck.exists() and saved_config(read_checkpoint(ck)["run_config"]) == cfg
    before = float(read_checkpoint(ck).get("seconds", 0.0)) if again else 0.0  # the steps' time before a resume
    t0 = time.perf_counter()
    model, temps = train(cfg, data.task, run, resume=again, progress=False)
    export_trained(cfg, model, temps, cfg.train.iterations, data.task, out, name=f"search-m{M}")
    seconds = before + time.perf_counter() - t0
    fit.write_text(json.dumps({"config": dumped, "seconds": seconds}) + "\n")
    return out, seconds


def distortion(split: datasets.KpiSplit, x: np.ndarray, x_hat: np.ndarray) -> dict[str, Any]:
    """NRMSE over all values (squared errors divided by the train variance of their feature) and RMSE
    per KPI in original units."""
    err = (np.asarray(x_hat, np.float64) - np.asarray(x, np.float64)) ** 2  # (N, D)
    return {"nrmse": float(np.sqrt((err / split.std.astype(np.float64) ** 2).mean())),
            "rmse_per_kpi": rmse_per_kpi(err, split.kpis)}


def probe_error(f_train: np.ndarray, y_train: np.ndarray, f_test: np.ndarray, y_test: np.ndarray) -> float:
    """Test error of a logistic regression on standardized features (one per code or reconstruction)."""
    scaler = StandardScaler().fit(f_train)
    clf = LogisticRegression(max_iter=2000).fit(scaler.transform(f_train), y_train)
    return float((clf.predict(scaler.transform(f_test)) != y_test).mean())


@dataclass
class Measured:
    rows: list[dict[str, Any]] = field(default_factory=list)
    lossless_downstream: float | None = None  # the downstream error of the first lossless codec measured
    resumed: int = 0  # rows taken from the cache of an earlier (interrupted or sharded) run


def nrmse_valid(codec: codecs.Codec, split: datasets.KpiSplit) -> float:
    return float(distortion(split, split.valid, codec.decode(codec.encode(split.valid)))["nrmse"])


def measure(codec: codecs.Codec, data: Data, out: Measured, fit_seconds: float = 0.0,
            chosen_on_valid: dict[str, float] | None = None) -> dict[str, Any]:
    """Every figure of one codec; appends the row to `out` and returns it. `chosen_on_valid`: the
    validation NRMSE of each candidate this codec was chosen from, by label."""
    s, tp, sp = data.split, data.train_pairs, data.test_pairs
    sym = codec.encode(s.test)
    x_hat = codec.decode(sym)
    row: dict[str, Any] = {
        "method": codec.family,
        "label": codec.label(codec.params),
        "role": codec.role,
        "message": codec.message,
        "params": codec.params,
        "bytes_per_vector": float(codec.sizes(sym).mean()),
        "entropy_bits_per_vector": codecs.factorized_entropy_bits(sym),
        **distortion(s, s.test, x_hat),
        "nrmse_valid": nrmse_valid(codec, s),
    }
    bitrate_cols = np.array([n.split("@")[0] in BITRATES for n in s.feature_names])
    row["negative_bitrate_share"] = float((x_hat[:, bitrate_cols] < 0).mean())
    clipped = x_hat.copy()
    clipped[:, bitrate_cols] = np.maximum(clipped[:, bitrate_cols], 0.0)
    row["nrmse_bitrates_clipped"] = distortion(s, s.test, clipped)["nrmse"]
    sym_tr, sym_te = codec.encode(tp.x), codec.encode(sp.x)
    lossless = np.array_equal(codec.decode(sym_te), sp.x.astype(np.float64))
    if lossless and out.lossless_downstream is not None:
        row["downstream_error"] = out.lossless_downstream  # the same inputs: the raw vector's figure
    else:
        row["downstream_error"] = probe_error(codec.decode(sym_tr), tp.low, codec.decode(sym_te), sp.low)
        if lossless:
            out.lossless_downstream = row["downstream_error"]
    f_tr = codec.code_features(sym_tr)
    f_te = codec.code_features(sym_te)
    row["downstream_error_from_code"] = None if f_tr is None or f_te is None else probe_error(
        f_tr, tp.low, f_te, sp.low)
    row["fit_seconds"] = fit_seconds
    if chosen_on_valid is not None:
        row["chosen_on_valid"] = chosen_on_valid
    out.rows.append(row)
    print(json.dumps({k: row[k] for k in ("label", "bytes_per_vector", "nrmse", "nrmse_valid", "downstream_error",
                                          "fit_seconds")}), flush=True)
    return row


def timed_fit(make: Callable[[], codecs.Codec], x_train: np.ndarray) -> tuple[codecs.Codec, float]:
    t0 = time.perf_counter()
    codec = make().fit(x_train)
    return codec, time.perf_counter() - t0


def kpi_major(kpis: Sequence[str], window: int) -> np.ndarray:
    """Feature order that groups each KPI's seconds (the time-major window is t0 of every KPI first)."""
    return np.array([t * len(kpis) + k for k in range(len(kpis)) for t in range(window)])


ROWS_FILE = "rows.jsonl"  # under --runs: every measured row as it lands, so an interrupted run resumes


def key_of(make: Callable[[], codecs.Codec]) -> str:
    """A stable name for a codec's constructor and its arguments (the resume key of its rows)."""
    if isinstance(make, partial):
        text = repr((make.func.__qualname__, make.args, sorted(make.keywords.items())))
    else:
        text = getattr(make, "__qualname__", repr(make))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def steps(plan: Plan, data: Data, runs: Path, out: Measured) -> list[tuple[str, Callable[[], dict[str, Any]]]]:
    """The run as (resume key, measure one row) pairs, the SDLGM search family and the strongest baselines
    first (what the study is about), the slowest fits last."""
    s = data.split
    order, mc = kpi_major(s.kpis, s.window), load_config(SHARED).model

    def group(makes: Sequence[Callable[[], codecs.Codec]]) -> tuple[str, Callable[[], dict[str, Any]]]:
        def go() -> dict[str, Any]:  # several candidates: the one with the least validation NRMSE
            fitted = [timed_fit(make, s.train) for make in makes]
            scores = [nrmse_valid(c, s) for c, _ in fitted]
            (codec, seconds), _ = min(zip(fitted, scores, strict=True), key=lambda cs: cs[1])
            return measure(codec, data, out, seconds, None if len(makes) == 1 else
                           {c.label(c.params): v for (c, _), v in zip(fitted, scores, strict=True)})
        return "|".join(key_of(m) for m in makes), go

    recipe = search_recipe_key(load_config(CONFIG).model.model_dump(mode="json"))

    def search(M: int) -> tuple[str, Callable[[], dict[str, Any]]]:
        variants = [(), *(v for m, v in plan.search_variants if m == M)]

        def go() -> dict[str, Any]:  # the candidate of least validation NRMSE (one where no variants)
            seconds, fitted = 0.0, []
            for over in variants:
                bundle, t = train_search(data, M, plan.search_iterations, runs, plan.rows, over)
                codec = SearchBundleCodec(bundle, runs)
                if len(variants) > 1:
                    codec.params["variant"] = variant_name(over) or "the config's recipe"
                fitted.append((codec, nrmse_valid(codec, s)))
                seconds += t
            codec, _ = min(fitted, key=lambda cs: cs[1])
            return measure(codec, data, out, seconds, None if len(variants) == 1 else
                           {c.label(c.params): v for c, v in fitted})
        key = f"search M={M} iterations={plan.search_iterations} recipe={recipe}"
        return key + "".join(f" | {variant_name(v)}" for v in variants[1:]), go

    def shared(K: int, L0: int, log1p: bool = False) -> tuple[str, Callable[[], dict[str, Any]]]:
        def go() -> dict[str, Any]:
            t0 = time.perf_counter()
            if not log1p:
                model = train_sdlgm(data, K, L0, plan.iterations, runs)
                return measure(SDLGMCodec(model, plan.iterations), data, out, time.perf_counter() - t0)
            transform = Log1pBitrates(s.feature_names, BITRATES)
            model = train_sdlgm(data, K, L0, plan.iterations, runs, transform)
            return measure(SDLGMLog1pCodec(model, plan.iterations, transform), data, out, time.perf_counter() - t0)
        return f"shared K={K} L0={L0} log1p={log1p} iterations={plan.iterations}", go

    rq = [[partial(codecs_faiss.ResidualQuantizer, M, b, plan.faiss_rows, encode_beam=e) for b, e in plan.rq_beams]
          for M in plan.rq]
    one: list[list[Callable[[], codecs.Codec]]] = [
        [codecs.RawFloat32], [codecs.Float16],
        *([partial(codecs.ProductQuantizer, M, b, order)] for M, b in plan.pq),
        *([partial(codecs_faiss.OptimizedPQ, M, order, plan.opq_iterations, plan.faiss_rows)] for M in plan.opq),
        *([partial(codecs.UniformScalar, b)] for b in plan.uniform_bits),
        *([partial(codecs.Lossless, k, a)] for k in ("deflate", "lzma") for a in (False, True)),
        *([partial(codecs.PCAQuant, m, b)] for m, b in plan.pca),
        *([partial(codecs.KMeansVQ, b)] for b in plan.kmeans_bits)]
    learned: list[list[Callable[[], codecs.Codec]]] = [
        *([partial(codecs_fsq.FSQ, codecs_fsq.levels_for(n), tuple(mc.encoder), tuple(mc.decoder),
                   plan.fsq_iterations)] for n in plan.fsq),
        *([partial(codecs.OMPSparse, K, L0, plan.omp_iterations, plan.omp_rows)] for K, L0 in plan.omp),
        *([partial(codecs.KSparseAE, K, k, tuple(mc.encoder), plan.iterations)] for K, k in plan.ksae)]
    lsq = [[partial(codecs_faiss.LocalSearch, M, plan.faiss_rows)] for M in plan.lsq]
    log1p = [shared(*((mc.K, mc.L0) if plan.rows is None else plan.sdlgm[0]), log1p=True)] if plan.log1p else []
    return [*(search(M) for M in plan.search), *(group(g) for g in [*rq, *one, *learned]),
            *(shared(K, L0) for K, L0 in plan.sdlgm), *log1p, *(group(g) for g in lsq)]


def cached(path: Path) -> dict[str, dict[str, Any]]:
    """The rows a run's rows.jsonl holds, by step key."""
    if not path.exists():
        return {}
    return {e["key"]: e["row"] for e in map(json.loads, path.read_text().splitlines())}


def seed_cache(plan: Plan, data: Data, runs: Path, prior: Path) -> int:
    """Fill `runs`/rows.jsonl from an earlier run's results file (its rows are in step order, the committed
    bundle's last) for every step but the search family's, whose rows are always measured with the current
    recipe: what reruns the SDLGM-search points alone. Steps the cache already holds are left alone.
    Returns the number of rows taken."""
    rows = [r for r in json.loads(prior.read_text())["rows"] if r["method"] != BundleCodec.family]
    keys = [key for key, _ in steps(plan, data, runs, Measured())]
    if len(rows) != len(keys):
        raise ValueError(f"{prior} has {len(rows)} rows where this plan has {len(keys)} steps: not the same plan")
    searched = [k.startswith("search M=") for k in keys]
    if searched != [r["method"] == SearchBundleCodec.family for r in rows]:
        raise ValueError(f"{prior}'s rows are not in this plan's step order")
    runs.mkdir(parents=True, exist_ok=True)
    done, taken = cached(runs / ROWS_FILE), 0
    with (runs / ROWS_FILE).open("a") as f:
        for key, row, skip in zip(keys, rows, searched, strict=True):
            if not skip and key not in done:
                f.write(json.dumps({"key": key, "row": {**row, "measured_by": f"an earlier run ({prior.name})"}}) + "\n")
                taken += 1
    return taken


def search_recipe_key(model: dict[str, Any]) -> str:
    """The search family's recipe as a short hash: a new recipe measures its points anew. The slot count M
    is left out, since every point sets its own: choosing another default point is not a new recipe."""
    return hashlib.sha256(json.dumps({k: v for k, v in model.items() if k != "M"}, sort_keys=True)
                          .encode()).hexdigest()[:12]


def run(plan: Plan, data: Data, runs: Path, shard: tuple[int, int] | None = None) -> Measured:
    """Every step of the plan, skipping those whose rows `runs`/rows.jsonl already holds (a resumed run),
    then the committed bundle (measured afresh every time: it changes with `make default-model`). With
    shard (k, n), only the steps whose index is k modulo n, and no bundle row: n processes share a run."""
    out = Measured()
    cache = runs / ROWS_FILE
    runs.mkdir(parents=True, exist_ok=True)
    for i, (key, go) in enumerate(steps(plan, data, runs, out)):
        if shard is not None and i % shard[1] != shard[0]:
            continue
        done = cached(cache)  # read before every step: another shard may have measured it meanwhile
        if key in done:
            out.rows.append(done[key])
            out.resumed += 1
            continue
        row = go()
        with cache.open("a") as f:
            f.write(json.dumps({"key": key, "row": row}) + "\n")
    if shard is None:
        measure(BundleCodec(BUNDLE, ROOT), data, out)
    return out


def context(plan: Plan, data: Data) -> dict[str, Any]:
    """Facts of the run the doc quotes: sizes of the split, the downstream labels, naive predictors."""
    s, tp, sp = data.split, data.train_pairs, data.test_pairs
    k = s.kpis.index(TARGET_KPI)
    dl = [i for i, n in enumerate(s.feature_names) if n.startswith(TARGET_KPI + "@")]
    current_low = sp.x.reshape(len(sp.x), s.window, -1)[:, :, k].mean(1) < THRESHOLD_KBPS
    return {
        "window": s.window, "kpis": list(s.kpis), "D": int(s.test.shape[1]),
        "train_rows": len(s.train), "valid_rows": len(s.valid), "test_rows": len(s.test),
        "train_traces": len(s.train_traces), "valid_traces": len(s.valid_traces), "test_traces": len(s.test_traces),
        "train_pairs": len(tp.x), "test_pairs": len(sp.x),
        "train_low_share": float(tp.low.mean()), "test_low_share": float(sp.low.mean()),
        "majority_error": float(min(sp.low.mean(), 1 - sp.low.mean())),
        "persistence_error": float((current_low != sp.low).mean()),
        "iterations": plan.iterations, "search_iterations": plan.search_iterations,
        "search_recipe": {k: v for k, v in load_config(CONFIG).model.model_dump(mode="json").items()
                          if k in ("beam", "train_beam", "sweeps", "candidates")},
        "search_variants": [[M, variant_name(v)] for M, v in plan.search_variants],
        "config": {"K": data.cfg.model.config(data.task.shape).K, "L0": data.cfg.model.config(data.task.shape).L0,
                   "kind": data.cfg.model.kind, "iterations": data.cfg.train.iterations},
        "quick": plan.rows is not None, "omp_rows": plan.omp_rows, "omp_iterations": plan.omp_iterations,
        "fsq_iterations": plan.fsq_iterations, "faiss_rows": plan.faiss_rows, "opq_iterations": plan.opq_iterations,
        "rq_beams": [list(b) for b in plan.rq_beams], "lsq_bytes": list(plan.lsq), "threshold_kbps": THRESHOLD_KBPS,
        "max_dl_bitrate": float(s.train[:, dl].max()), "median_dl_bitrate": float(np.median(s.train[:, dl])),
        "std_dl_bitrate": float(s.train[:, dl].std(dtype=np.float64)), "missing_share": data.missing_share,
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny grid and few rows: the code path in seconds")
    p.add_argument("--iterations", type=int, help="SDLGM and k-sparse AE steps (default: the plan's)")
    p.add_argument("--results", default=str(ROOT / "docs" / "results"), help="folder for kpi_rd.json and .png")
    p.add_argument("--doc", default=str(ROOT / "docs" / "kpi.md"))
    p.add_argument("--runs", help="folder for the SDLGM checkpoints (default: a temporary folder)")
    p.add_argument("--shard", help="K/N: measure only every N-th step from the K-th (0-based) into --runs' "
                   "rows.jsonl and write no results; a run without --shard then assembles them")
    p.add_argument("--baselines-from", help="an earlier run's kpi_rd.json: its rows of every step but the "
                   "search family's seed --runs' rows.jsonl, so that only the SDLGM-search points are measured")
    p.add_argument("--lsq", type=int, nargs="*", help="bytes of the LSQ points (default: the plan's; LSQ's "
                   "fit takes minutes at 12 and 16 bytes)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    plan = QUICK if args.quick else FULL
    if args.iterations is not None:
        plan = replace(plan, iterations=args.iterations)
    if args.lsq is not None:
        plan = replace(plan, lsq=tuple(args.lsq))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on 2 shared cores one thread per process runs several times faster than two
    try:
        with threadpool_limits(1), tempfile.TemporaryDirectory() as tmp:
            data = load_data(load_config(CONFIG), plan.rows)
            shard = tuple(int(v) for v in args.shard.split("/")) if args.shard else None
            if shard is not None and (not args.runs or len(shard) != 2 or not 0 <= shard[0] < shard[1]):
                p.error("--shard K/N needs 0 <= K < N and --runs")
            if args.baselines_from:
                if not args.runs:
                    p.error("--baselines-from needs --runs")
                taken = seed_cache(plan, data, Path(args.runs), Path(args.baselines_from))
                print(f"kpi_rd: {taken} rows taken from {args.baselines_from}", flush=True)
            measured = run(plan, data, Path(args.runs) if args.runs else Path(tmp), shard)  # type: ignore[arg-type]
            meta = {**context(plan, data), "seconds": time.perf_counter() - t0, "resumed_rows": measured.resumed,
                    "earlier_rows": sum("measured_by" in r for r in measured.rows),
                    "fit_seconds_total": sum(r.get("fit_seconds", 0.0) for r in measured.rows)}
    finally:
        torch.set_num_threads(threads)
    if shard is not None:
        print(f"kpi_rd: shard {args.shard} done in {meta['seconds']:.0f} s; rows in {Path(args.runs) / ROWS_FILE}")
        return 0
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    content = {"meta": meta, "rows": measured.rows}
    (results / "kpi_rd.json").write_text(json.dumps(content, indent=1) + "\n")
    png, doc = results / "kpi_rd.png", Path(args.doc)
    kpi_report.write(content, png, doc)
    print(f"kpi_rd: {meta['seconds']:.0f} s on this machine; wrote {results / 'kpi_rd.json'}, {png}, {doc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
