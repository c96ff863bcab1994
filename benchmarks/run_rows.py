"""Rows per onnxruntime run: encode throughput and resident memory of one bundle at several slice sizes.

    python benchmarks/run_rows.py [--bundle models/kpi5g] [--rows 1024] [--slices 0 16 32 64 128 256]
                                  [--out docs/results/run_rows.json]

Each slice size runs in a fresh process (onnxruntime's CPU arena keeps the peak of the largest run, so
one process per size keeps them apart): the bundle opened as the service opens it (one intra-op and one
inter-op thread, SDLGM_MAX_RUN_ROWS = the slice size, 0 = the whole batch in one run), one warm-up pass
over a batch of --rows random standard-normal vectors, then --repeats timed passes of `encode` over it.
Prints and writes, per slice size: vectors/s, the ratio against the one-run pass measured in the same
invocation, and the process's resident memory (VmRSS) after loading and after the passes, and its peak
(VmHWM). What SDLGM_MAX_RUN_ROWS's default is chosen from (docs/serving.md, "Memory").
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def status_mb(field: str) -> float:
    """A VmRSS/VmHWM figure of this process from /proc, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def measure(bundle: Path, rows: int, run_rows: int, repeats: int) -> dict[str, Any]:
    """One slice size in this process (called in a child by main)."""
    import dataclasses

    import numpy as np

    sys.path.insert(0, str(REPO))
    from bundle.runtime import open_bundle

    runtime = dataclasses.replace(open_bundle(bundle, threads=(1, 1)), run_rows=run_rows)
    loaded = status_mb("VmRSS")
    x = np.random.default_rng(0).standard_normal((rows, runtime.manifest.D)).astype(np.float32)
    runtime.encode(x)
    start = time.perf_counter()
    for _ in range(repeats):
        runtime.encode(x)
    seconds = (time.perf_counter() - start) / repeats
    return {"run_rows": run_rows, "vectors_per_s": rows / seconds, "rss_loaded_mb": loaded,
            "rss_after_mb": status_mb("VmRSS"), "rss_peak_mb": status_mb("VmHWM")}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", type=Path, default=REPO / "models" / "kpi5g")
    p.add_argument("--rows", type=int, default=1024)
    p.add_argument("--slices", type=int, nargs="+", default=[0, 16, 32, 64, 128, 256])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, help="write the rows as JSON here")
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child is not None:
        print(json.dumps(measure(args.bundle, args.rows, args.child, args.repeats)))
        return 0
    sizes = [0, *[s for s in args.slices if s != 0]]  # the one-run pass first: every ratio is against it
    rows = []
    for size in sizes:
        out = subprocess.run([sys.executable, __file__, "--bundle", str(args.bundle), "--rows", str(args.rows),
                              "--repeats", str(args.repeats), "--child", str(size)],
                             check=True, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        row = json.loads(out.stdout.strip().splitlines()[-1])
        row["ratio_to_one_run"] = row["vectors_per_s"] / (rows[0]["vectors_per_s"] if rows else row["vectors_per_s"])
        rows.append(row)
        print(f"run_rows {size or 'all':>5}: {row['vectors_per_s']:7.0f} vectors/s ({row['ratio_to_one_run']:.2f}x "
              f"one run), RSS loaded {row['rss_loaded_mb']:.0f} MB, after {row['rss_after_mb']:.0f} MB, "
              f"peak {row['rss_peak_mb']:.0f} MB", flush=True)
    result = {"bundle": args.bundle.name, "rows": args.rows, "repeats": args.repeats, "cpus": os.cpu_count(),
              "load_average": os.getloadavg(), "runs": rows}
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
