"""Table II: multi-label classification on Mulan Emotions, Birds and CAL500 (or any Mulan ARFF + XML),
SDLGM-Dis, SDLGM-Gen and SDLGM-Con beside one-vs-rest logistic regression and the softmax and sparsemax
losses, all in the same run under the protocol of training/multilabel.py (drop label-less rows,
standardize on the training part, 5-fold CV on the training part for hyperparameters, 5 reruns; a set
with one file by outer 5-fold).

    python benchmarks/table2.py                                  # the three sets (make reproduce-table2)
    python benchmarks/table2.py --sets emotions --quick          # seconds: a smoke run
    python benchmarks/table2.py --sets mine=train.arff,test.arff,mine.xml yeast=yeast.arff,yeast.xml
    python benchmarks/table2.py --arff my-train.arff --xml my.xml [--test-arff my-test.arff] --name mine
    python benchmarks/table2.py --sets birds --export models    # also writes models/birds-sdlgm-dis, ...
    python benchmarks/table2.py --sets emotions --grid wide --ensemble 3 --rules per-label  # the searched options

--sets takes the named sets (emotions, birds, cal500: checksums verified) and NAME=ARFF,XML (one file:
outer 5-fold) or NAME=TRAIN_ARFF,TEST_ARFF,XML (a train/test pair) for any other Mulan set; NAME is how
the set is called in the table and in its bundles' names.

Writes <out>/table2.json: objects with dataset, method, split, objective (the CV criterion),
protocol (grid, ensemble, rules: the options below), micro_f1_mean/std, macro_f1_mean/std (per-label mean, scikit-learn's), macro_f1_harmonic_mean/std (the
sparsemax paper's definition), per_run, hyperparameters. Rows of other (data set, method, objective)
triples are kept, so sets and methods can be run one at a time. `--objectives mean micro harmonic` adds
the rows of one model per column (each picked by the F1 it reports) to the default's one model for all.
Then <out>/table2.md sets the rows beside the paper's (benchmarks/table2_report.py).

With --export DIR, each SDLGM variant's rerun-0 model (trained on the training part with the CV-chosen
hyperparameters; for a one-file set, outer fold 0's) is exported as the supervised bundle
DIR/<set>-<variant> (for example birds-sdlgm-con) with the CV-chosen threshold for every label: `/predict`
serves it (SDLGM_MODELS_DIR=DIR) and answers the labels whose probability reaches it.
"""

from __future__ import annotations

import argparse
import json
import re
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from table2_report import markdown

from bundle.manifest import NAME_PATTERN
from training import datasets, multilabel

ROOT = Path(__file__).resolve().parents[1]


def mulan_sets(specs: Sequence[str], data_dir: str | None) -> list[tuple[str, datasets.MultiLabelData,
                                                                      datasets.MultiLabelData | None]]:
    """The --sets entries as (name, train, test or None): named sets from the data directory (checksums
    verified), NAME=ARFF,XML and NAME=TRAIN_ARFF,TEST_ARFF,XML from the files given."""
    out = []
    for spec in specs:
        name, eq, files = spec.partition("=")
        if not re.fullmatch(NAME_PATTERN, name):
            raise ValueError(f"--sets {spec!r}: the name {name!r} must match {NAME_PATTERN} (it names bundles)")
        if not eq:
            if name not in datasets.MULAN_SETS:
                raise ValueError(f"--sets {spec!r}: not a named set ({', '.join(datasets.MULAN_SETS)}); give "
                                 "another Mulan set as NAME=ARFF,XML or NAME=TRAIN_ARFF,TEST_ARFF,XML")
            out.append((name, *datasets.load_mulan(name, datasets.data_dir(data_dir))))
            continue
        paths = [Path(f) for f in files.split(",")]
        if len(paths) not in (2, 3) or not all(f.name for f in paths):
            raise ValueError(f"--sets {spec!r}: expected NAME=ARFF,XML or NAME=TRAIN_ARFF,TEST_ARFF,XML")
        out.append((name, *datasets.read_mulan_pair(paths[0], paths[1] if len(paths) == 3 else None, paths[-1])))
    return out


def exporter(out_dir: Path, dataset: str, data: datasets.MultiLabelData, version: str) -> multilabel.Exporter:
    """Writes the bundle <out_dir>/<dataset>-<variant> of each SDLGM variant's rerun-0 model."""
    def export(method: multilabel.Method, model: multilabel.Supervised, fold: multilabel.Fold,
               hp: dict[str, Any], rule: float) -> None:
        name = f"{dataset}-{method.name.lower()}"
        test = datasets.MultiLabelData(fold.X_test_raw, fold.Y_test, data.feature_names, data.label_names)
        multilabel.export_supervised(model, fold.X_train_raw, out_dir / name, name, version, data, rule,
                                     method.name, test, {**hp, "rule": rule, "rerun": 0, "dataset": dataset})
        print(f"exported {out_dir / name} (threshold {rule})")
    return export


def row_key(row: dict[str, Any]) -> tuple[str, str, str]:
    """A row's (data set, method, CV criterion); rows written before criteria were recorded are "mean"."""
    return row.get("dataset", ""), row.get("method", ""), row.get("objective", "mean")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", nargs="*", default=list(datasets.MULAN_SETS),
                   help="named Mulan sets, or NAME=ARFF,XML / NAME=TRAIN_ARFF,TEST_ARFF,XML")
    p.add_argument("--arff", help="a Mulan ARFF file (the training part when --test-arff is given)")
    p.add_argument("--test-arff", help="the test ARFF matching --arff (else an outer k-fold)")
    p.add_argument("--xml", help="the Mulan XML label file for --arff")
    p.add_argument("--name", default="custom", help="the data set's name in the table (with --arff)")
    p.add_argument("--methods", nargs="*", help="method names to run (default all)")
    p.add_argument("--reruns", type=int, default=5)
    p.add_argument("--cv-folds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="torch threads (the models are tiny: 1 is fastest)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--quick", action="store_true", help="tiny grids, 2 reruns, 2 CV folds, 3 epochs")
    p.add_argument("--objectives", nargs="+", choices=list(multilabel.OBJECTIVES), default=["mean"],
                   help="CV criteria, each giving its own rows: mean (one model for every column, the default), "
                        "micro and harmonic (one model per column)")
    p.add_argument("--grid", choices=list(multilabel.GRIDS), default="default",
                   help="the SDLGM grids: default, or wide (stronger weight decay; SDLGM-Con's tau in {1, 3})")
    p.add_argument("--ensemble", type=int, default=1,
                   help="each SDLGM fit averages this many seeds' probabilities (in the CV too; no --export)")
    p.add_argument("--rules", choices=list(multilabel.RULES), default="global",
                   help="per-label: the CV picks one threshold per label for the SDLGM variants and logistic")
    p.add_argument("--export", type=Path, help="write each SDLGM variant's rerun-0 bundle under this directory")
    p.add_argument("--export-version", default="1.0.0", help="the exported bundles' version")
    p.add_argument("--out", default=str(ROOT / "docs" / "results"))
    args = p.parse_args(argv)
    if (args.arff is None) != (args.xml is None):
        p.error("--arff and --xml go together")
    if args.ensemble < 1:
        p.error("--ensemble must be at least 1")
    if args.export is not None and args.ensemble > 1:
        p.error("--export writes one model per variant: it needs --ensemble 1")
    t0 = time.perf_counter()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=UserWarning)
    reruns, folds = (2, 2) if args.quick else (args.reruns, args.cv_folds)
    chosen = [m for m in multilabel.methods(args.quick, args.grid, args.ensemble, args.rules)
              if not args.methods or m.name in args.methods]
    if not chosen:
        p.error(f"no method among {[m.name for m in multilabel.methods()]}")
    if args.arff is not None:
        args.sets = [f"{args.name}={args.arff},{args.test_arff + ',' if args.test_arff else ''}{args.xml}"]
    try:
        jobs = mulan_sets(args.sets, args.data_dir)
    except ValueError as e:
        p.error(str(e))
    path = Path(args.out) / "table2.json"
    earlier = json.loads(path.read_text()) if path.exists() else []  # read first: a bad file fails fast
    rows: list[dict[str, Any]] = []
    for name, train, test in jobs:
        export = None if args.export is None else exporter(args.export, name, train, args.export_version)
        rows += multilabel.run_dataset(name, train, test, reruns, folds, chosen, log=print, export=export,
                                       objectives=args.objectives)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ran = {row_key(r) for r in rows}
    kept = [r for r in earlier if row_key(r) not in ran]
    path.write_text(json.dumps(kept + rows, indent=2) + "\n")
    (out / "table2.md").write_text(markdown(kept + rows))
    print(f"table2: {time.perf_counter() - t0:.0f} s on this machine")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
