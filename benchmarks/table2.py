"""Table II: multi-label classification on Mulan Emotions, Birds and CAL500 (or any Mulan ARFF + XML),
SDLGM-Dis and SDLGM-Gen beside one-vs-rest logistic regression and the softmax and sparsemax losses, all
in the same run under the protocol of training/multilabel.py (drop label-less rows, standardize on the
training part, 5-fold CV on the training part for hyperparameters, 5 reruns; CAL500 by outer 5-fold).

    python benchmarks/table2.py                                  # the three sets (make reproduce-table2)
    python benchmarks/table2.py --sets emotions --quick          # seconds: a smoke run
    python benchmarks/table2.py --arff my-train.arff --xml my.xml [--test-arff my-test.arff] --name mine

Writes <out>/table2.json: objects with dataset, method, micro_f1_mean/std, macro_f1_mean/std (per-label
mean, scikit-learn's), macro_f1_harmonic_mean/std (the sparsemax paper's definition), hyperparameters.
Rows of other (data set, method) pairs are kept, so sets and methods can be run one at a time. Then
<out>/table2.md sets the rows beside the paper's (benchmarks/table2_report.py).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from table2_report import markdown

from training import datasets, multilabel

ROOT = Path(__file__).resolve().parents[1]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", nargs="*", default=list(datasets.MULAN_SETS), help="named Mulan sets")
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
    p.add_argument("--out", default=str(ROOT / "docs" / "results"))
    args = p.parse_args(argv)
    if (args.arff is None) != (args.xml is None):
        p.error("--arff and --xml go together")
    t0 = time.perf_counter()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=UserWarning)
    reruns, folds = (2, 2) if args.quick else (args.reruns, args.cv_folds)
    chosen = [m for m in multilabel.methods(args.quick) if not args.methods or m.name in args.methods]
    if not chosen:
        p.error(f"no method among {[m.name for m in multilabel.methods()]}")
    jobs: list[tuple[str, datasets.MultiLabelData, datasets.MultiLabelData | None]] = []
    if args.arff is not None:
        train = datasets.read_mulan(Path(args.arff), Path(args.xml))
        test = datasets.read_mulan(Path(args.test_arff), Path(args.xml)) if args.test_arff else None
        jobs.append((args.name, train, test))
    else:
        root = datasets.data_dir(args.data_dir)
        jobs += [(name, *datasets.load_mulan(name, root)) for name in args.sets]
    path = Path(args.out) / "table2.json"
    earlier = json.loads(path.read_text()) if path.exists() else []  # read first: a bad file fails fast
    rows: list[dict[str, Any]] = []
    for name, train, test in jobs:
        rows += multilabel.run_dataset(name, train, test, reruns, folds, chosen, log=print)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ran = {(r["dataset"], r["method"]) for r in rows}
    kept = [r for r in earlier if (r.get("dataset"), r.get("method")) not in ran]
    path.write_text(json.dumps(kept + rows, indent=2) + "\n")
    (out / "table2.md").write_text(markdown(kept + rows))
    print(f"table2: {time.perf_counter() - t0:.0f} s on this machine")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
