"""Bulk coding throughput: vectors/s of `sdlgm encode` in one process (1 and 2 onnxruntime threads) and of
the Ray Data job (benchmarks/bulk_ray.py, 1 and 2 local actors of one thread each), on the same Parquet
data set of real KPI windows (the training traces' 10-second windows, repeated to --rows rows), through the
committed default bundle. Prints a table and writes docs/results/bulk.json.

    python benchmarks/bulk_bench.py [--rows 100000] [--format v1] [--work runs/bulk_bench]

Each figure is rows / wall time of the whole job: loading the bundle, reading, coding and writing the
output (the CLI's in-process encode_file; the Ray job from its read to its last file written, its actors'
start included, the local cluster's start not: that is reported beside as `cluster_start_s`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bundle.bulk import encode_file
from training import datasets

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "models" / "kpi5g"
RESULT = REPO / "docs" / "results" / "bulk.json"
FILES = 8  # the Ray data set's Parquet files


def make_dataset(work: Path, rows: int) -> tuple[Path, Path]:
    """The windows as one Parquet file (the CLI's input) and as FILES files in a folder (Ray's)."""
    split = datasets.load_kpi_split(datasets.data_dir(None), kpis=datasets.DEFAULT_KPIS, window=10, stride=2, seed=0)
    x = np.resize(split.train, (rows, split.train.shape[1]))  # the training windows, repeated
    table = pa.table({"id": pa.array(np.arange(rows)), **{n: pa.array(x[:, j])
                                                         for j, n in enumerate(split.feature_names)}})
    one, folder = work / "windows.parquet", work / "windows"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    pq.write_table(table, one)
    step = -(-rows // FILES)
    for i in range(FILES):
        pq.write_table(table.slice(i * step, step), folder / f"part-{i}.parquet")
    return one, folder


def bench(rows: int, fmt: str, work: Path, chunk_rows: int) -> dict[str, object]:
    import bulk_ray

    work.mkdir(parents=True, exist_ok=True)
    one, folder = make_dataset(work, rows)
    runs: list[dict[str, object]] = []
    for threads in (1, 2):
        out = work / f"cli-{threads}.parquet"
        out.unlink(missing_ok=True)
        t0 = time.perf_counter()
        res = encode_file(BUNDLE, one, out, fmt, ["id"], chunk_rows, threads, progress=False)  # type: ignore[arg-type]
        wall = time.perf_counter() - t0
        runs.append({"runner": "cli", "threads": threads, "workers": 1, "rows": res["rows"], "seconds": wall,
                     "vectors_per_s": rows / wall})
    t0 = time.perf_counter()
    bulk_ray.start_local(workers=2)
    cluster_start = time.perf_counter() - t0
    for workers in (1, 2):
        out = work / f"ray-{workers}"
        shutil.rmtree(out, ignore_errors=True)
        res = bulk_ray.run_job("encode", BUNDLE, folder, out, workers, fmt, ["id"], chunk_rows, threads=1)  # type: ignore[arg-type]
        runs.append({"runner": "ray", "threads": 1, "workers": workers, "rows": res["rows"],
                     "seconds": res["seconds"], "vectors_per_s": res["vectors_per_s"]})
    return {"bundle": "models/kpi5g", "format": fmt, "rows": rows, "chunk_rows": chunk_rows, "ray_files": FILES,
            "cluster_start_s": cluster_start, "cpus": os.cpu_count(), "load_average_at_start": os.getloadavg(),
            "python": platform.python_version(), "runs": runs,
            "command": "python benchmarks/bulk_bench.py " + " ".join(sys.argv[1:])}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--format", choices=["v1", "enum"], default="v1")
    p.add_argument("--chunk-rows", type=int, default=8192)
    p.add_argument("--work", default=str(REPO / "runs" / "bulk_bench"))
    p.add_argument("--out", default=str(RESULT), help="the result file")
    args = p.parse_args(argv)
    result = bench(args.rows, args.format, Path(args.work), args.chunk_rows)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'runner':8} {'threads':>7} {'workers':>7} {'rows':>8} {'seconds':>8} {'vectors/s':>10}")
    for r in result["runs"]:  # type: ignore[attr-defined]
        print(f"{r['runner']:8} {r['threads']:>7} {r['workers']:>7} {r['rows']:>8} {r['seconds']:>8.2f} "
              f"{r['vectors_per_s']:>10.0f}")
    print(f"(Ray's local cluster started in {result['cluster_start_s']:.1f} s, not counted; results in {args.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
