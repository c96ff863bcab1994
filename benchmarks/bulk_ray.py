"""Bulk coding as a Ray Data job: the per-chunk functions of `sdlgm encode` / `sdlgm decode`
(bundle.bulk.Encoder, Decoder) in `map_batches` over a Parquet data set, on a fixed pool of actors that
each load the bundle once.

    python benchmarks/bulk_ray.py encode --bundle models/kpi5g --in windows/ --out codes/ --workers 2
    python benchmarks/bulk_ray.py decode --bundle models/kpi5g --in codes/ --out windows-hat/ --workers 2

`--in` is a Parquet file or a folder of them; `--out` a folder, one Parquet file per block, each with the
sdlgm metadata of bundle.bulk (the model, its fingerprint, the format) in its schema. Without `--address`
the job starts a local Ray cluster; `--address auto` joins a running one (`ray start --head`). The job is
not resumable as `sdlgm encode` is: Ray retries a failed task itself. Needs the ray extra (ray[data]).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from bundle.bulk import CODE_COLUMN, META_KEY, BulkError, Decoder, Encoder, check_columns, open_source
from bundle.formats import Format

# Logical CPUs of a local cluster beyond the workers: Ray's read and write tasks need one each, and with
# every CPU held by an actor the job would wait for ever.
SPARE_CPUS = 2


def start_local(workers: int, address: str | None = None) -> None:
    """Join the cluster at `address`, or start a local one with room for `workers` actors and the I/O tasks."""
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=workers + SPARE_CPUS, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False


def _files(src: Path) -> list[Path]:
    files = sorted(src.glob("*.parquet")) if src.is_dir() else [src]
    if not files:
        raise BulkError(f"{src}: no Parquet files")
    return files


def _first_file(src: Path) -> Path:
    return _files(src)[0]


def run_job(command: str, bundle: Path, src: Path, out: Path, workers: int, fmt: Format = "v1",
            keep: Sequence[str] = (), batch_rows: int = 8192, threads: int = 1,
            address: str | None = None) -> dict[str, Any]:
    """encode or decode every row of the Parquet data set `src` into the folder `out` with `workers` actors
    of `threads` onnxruntime threads each; the job's wall time (from reading to the last file written)."""
    import ray.data

    if out.exists() and any(out.glob("*.parquet")):  # the report counts the folder's files: only this run's
        raise BulkError(f"{out} already holds Parquet files; give an empty or new folder")
    start_local(workers, address)
    first = open_source(_first_file(src))
    fn: type[Encoder] | type[Decoder]
    if command == "encode":
        fn = Encoder
        Encoder(bundle, fmt, keep, threads).check(first.columns, str(src))  # refused here, not in an actor
    else:
        fn = Decoder
        meta = first.metadata or {}
        decoder = Decoder(bundle, meta.get("format", "v1"), keep, threads)
        for path in _files(src):  # every file: codes of another bundle of the same K and L0 would decode wrongly
            theirs = json.loads((pq.read_schema(path).metadata or {}).get(META_KEY, b"{}"))
            if theirs.get("fingerprint") != decoder.runtime.manifest.fingerprint:
                raise BulkError(f"{path} does not hold codes of bundle {bundle} (its fingerprint differs)")
        check_columns(first.columns, [CODE_COLUMN], keep, str(src), "a code file's")
        fmt = decoder.fmt
    # Blocks of about one batch, so that every actor has work: Ray's Parquet reader would read a small data
    # set (tens of MB) as one block, which one actor alone codes whatever the pool's size.
    sample = next(pq.ParquetFile(_first_file(src)).iter_batches(batch_size=1024), None)
    if sample is not None and sample.num_rows:
        ray.data.DataContext.get_current().target_max_block_size = batch_rows * sample.nbytes // sample.num_rows
    t0 = time.perf_counter()
    ds = ray.data.read_parquet(str(src))
    ds = ds.map_batches(fn, fn_constructor_kwargs={"bundle_dir": str(bundle), "fmt": fmt, "keep": list(keep),
                                                   "threads": threads},
                        batch_format="pyarrow", batch_size=batch_rows,
                        compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=1)
    ds.write_parquet(str(out))
    seconds = time.perf_counter() - t0
    files = sorted(out.glob("*.parquet"))
    rows = sum(pq.read_metadata(f).num_rows for f in files)
    metadata = json.loads((pq.read_schema(files[0]).metadata or {})[META_KEY]) if files else None
    return {"command": command, "out": str(out), "files": len(files), "rows": rows, "workers": workers,
            "threads": threads, "seconds": seconds, "vectors_per_s": rows / seconds, "metadata": metadata}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["encode", "decode"])
    p.add_argument("--bundle", required=True)
    p.add_argument("--in", dest="input", required=True, help="a Parquet file or a folder of them")
    p.add_argument("--out", required=True, help="the output folder")
    p.add_argument("--workers", type=int, default=2, help="actors, each with the bundle loaded")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads per actor")
    p.add_argument("--format", choices=["v1", "enum", "range"], default="v1")
    p.add_argument("--keep", action="append", default=[], metavar="COLUMN")
    p.add_argument("--batch-rows", type=int, default=8192)
    p.add_argument("--address", help="a running Ray cluster (e.g. auto); default: start a local one")
    args = p.parse_args(argv)
    try:
        result = run_job(args.command, Path(args.bundle), Path(args.input), Path(args.out), args.workers,
                         args.format, args.keep, args.batch_rows, args.threads, args.address)
    except BulkError as exc:
        raise SystemExit(f"bulk_ray: {exc}") from exc
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
