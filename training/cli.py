"""The `sdlgm` command line: `sdlgm train`, `sdlgm eval`, `sdlgm export`, and the bulk coding of files
`sdlgm encode`, `sdlgm decode` (bundle.bulk); each is `main(argv)`.

Every command imports what it needs when it runs: encode and decode import no torch (they need the bulk
extra only), and `sdlgm train` under torchrun trains with DistributedDataParallel (training.distributed).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _overrides(pairs: Sequence[str]) -> dict[str, object]:
    import yaml

    out: dict[str, object] = {}
    for p in pairs:
        key, sep, value = p.partition("=")
        if not sep:
            raise SystemExit(f"--set expects key=value, got {p!r}")
        out[key] = yaml.safe_load(value)
    return out


def cmd_train(args: argparse.Namespace) -> int:
    from training.config import load_config
    from training.distributed import World
    from training.tasks import load_task
    from training.trainer import train

    overrides = _overrides(args.set)
    if args.data_dir:
        overrides["data.dir"] = args.data_dir
    cfg = load_config(args.config, overrides)
    out = Path(args.out or f"runs/{cfg.name}")
    task = load_task(cfg.data, cfg.train.seed)
    world = World.from_env(cfg.train.device)  # a world of one unless torchrun started this process
    try:
        train(cfg, task, out, resume=args.resume, progress=not args.no_progress, stop_after=args.stop_after,
              world=world)
    finally:
        world.close()
    if world.main:
        print(json.dumps({"run": str(out), "checkpoint": str(out / "checkpoint.pt"), "processes": world.size}))
    return 0


def _load_run(run: Path, data_dir: str | None) -> tuple[Any, Any, Any, Any]:
    from training.tasks import load_task
    from training.trainer import CHECKPOINT, load_checkpoint

    cfg, model, temps, ck = load_checkpoint(run / CHECKPOINT)
    data = cfg.data.model_copy(update={"dir": data_dir}) if data_dir else cfg.data
    return cfg, model, temps, (ck, load_task(data, cfg.train.seed))


def cmd_eval(args: argparse.Namespace) -> int:
    from training.evaluate import evaluate

    cfg, model, temps, (ck, task) = _load_run(Path(args.run), args.data_dir)
    samples = args.is_samples if args.is_samples is not None else cfg.eval.is_samples
    result = evaluate(model, task, args.split, temps, int(ck["step"]), samples, cfg.eval.is_rows, cfg.eval.is_seed,
                      threshold_grid=cfg.train.threshold_grid)
    result = {"run": args.run, "split": args.split, "step": int(ck["step"]), **result}
    (Path(args.run) / f"eval-{args.split}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from training.export import ExportError, export_trained

    cfg, model, temps, (ck, task) = _load_run(Path(args.run), args.data_dir)
    out = Path(args.out)
    try:
        manifest = export_trained(cfg, model, temps, int(ck["step"]), task, out, args.name, args.version)
    except ExportError as exc:
        raise SystemExit(str(exc)) from exc
    print(json.dumps({"bundle": str(out), "fingerprint": manifest.fingerprint, "evaluation": manifest.evaluation},
                     indent=2))
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    from bundle.bulk import BulkError, encode_file
    from bundle.manifest import BundleError

    try:
        result = encode_file(Path(args.bundle), Path(args.input), Path(args.out), args.format, args.keep,
                             args.chunk_rows, args.threads, args.stop_after_chunks, not args.no_progress)
    except (BulkError, BundleError) as exc:  # bad input or a bundle refused: one line, no traceback
        raise SystemExit(f"sdlgm encode: {exc}") from exc
    print(json.dumps(result, indent=2))
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    from bundle.bulk import BulkError, decode_file
    from bundle.manifest import BundleError

    try:
        result = decode_file(Path(args.bundle), Path(args.input), Path(args.out), args.keep, args.chunk_rows,
                             args.threads, args.stop_after_chunks, not args.no_progress)
    except (BulkError, BundleError) as exc:
        raise SystemExit(f"sdlgm decode: {exc}") from exc
    print(json.dumps(result, indent=2))
    return 0


def _bulk_options(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--bundle", required=True, help="the bundle directory (manifest.json and its graphs)")
    p.add_argument("--in", dest="input", required=True, metavar="FILE", help=f"{what} (.csv, .parquet or .pq)")
    p.add_argument("--out", required=True, metavar="FILE", help="the output file (.csv, .parquet or .pq)")
    p.add_argument("--keep", action="append", default=[], metavar="COLUMN",
                   help="carry this input column over to the output (e.g. a row id); repeatable")
    p.add_argument("--chunk-rows", type=int, default=8192, help="rows per chunk: one part file of the resume state")
    p.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: its default)")
    p.add_argument("--stop-after-chunks", type=int, metavar="N",
                   help="stop after coding N chunks; rerun the same command to resume")
    p.add_argument("--no-progress", action="store_true")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sdlgm", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a model from a YAML config")
    t.add_argument("--config", required=True)
    t.add_argument("--out", help="run directory (default runs/<name>)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    t.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.pt")
    t.add_argument("--stop-after", type=int, metavar="STEP", help="stop after this step; continue with --resume")
    t.add_argument("--no-progress", action="store_true")
    t.add_argument("--data-dir")
    t.set_defaults(fn=cmd_train)
    e = sub.add_parser("eval", help="evaluate a run's checkpoint (discrete and relaxed figures)")
    e.add_argument("--run", required=True)
    e.add_argument("--split", choices=["valid", "test"], default="test")
    e.add_argument("--is-samples", type=int)
    e.add_argument("--data-dir")
    e.set_defaults(fn=cmd_eval)
    x = sub.add_parser("export", help="export a run to an ONNX bundle (graphs + manifest)")
    x.add_argument("--run", required=True)
    x.add_argument("--out", required=True)
    x.add_argument("--name")
    x.add_argument("--version")
    x.add_argument("--data-dir")
    x.set_defaults(fn=cmd_export)
    n = sub.add_parser("encode", help="encode a CSV or Parquet file of vectors into a file of codes (resumable)")
    _bulk_options(n, "vectors, one column per feature name of the bundle")
    n.add_argument("--format", choices=["v1", "enum", "range"], default="v1", help="the code format")
    n.set_defaults(fn=cmd_encode)
    d = sub.add_parser("decode", help="decode a file of codes (from sdlgm encode) into reconstructions")
    _bulk_options(d, "codes written by sdlgm encode")
    d.set_defaults(fn=cmd_decode)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
