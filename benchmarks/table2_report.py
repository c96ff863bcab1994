"""Table II beside the paper: `docs/results/table2.md` and the measured part of `docs/results.md`'s Table II
section, from the rows of `docs/results/table2.json` and the paper's rows (PAPER below), with no rerun.

    python benchmarks/table2_report.py        # also run at the end of benchmarks/table2.py (table2.md only)

Each cell sets our F1 beside the paper's. The paper's Macro-F1 is the harmonic mean of macro precision and
macro recall (the sparsemax paper's definition, which its baseline rows come from), so it sits beside our
harmonic column; our per-label mean (scikit-learn's average="macro") is given too, labelled: the paper
reports none. Then our best SDLGM against the paper's best SDLGM and our best baseline, cell by cell; our
baselines against the paper's; and, for a set measured by outer folds, each method's range over the folds
(what one fixed train/test split could have given). Every figure of the generated text comes from the two.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SETS = ("birds", "emotions", "cal500")
DOC = ROOT / "docs" / "results.md"
DOC_BEGIN = "<!-- table2_report: begin (python benchmarks/table2_report.py writes this part from docs/results/table2.json) -->"
DOC_END = "<!-- table2_report: end -->"

# The paper's Table II (F1 in %), (micro, Macro-F1) per data set in the order of SETS: Xu, Onoro Rubio,
# Serra, Niepert, "Learning Sparsity of Representations with Discrete Latent Variables", Table II, as quoted
# in ../shared/REFERENCES.md. Its logistic, softmax and sparsemax rows are those of Martins & Astudillo,
# "From Softmax to Sparsemax", ICML 2016, whose Macro-F1 is the harmonic mean of macro precision and macro
# recall; the paper's SDLGM rows are means of 5 reruns.
PAPER: dict[str, tuple[tuple[float, float], ...]] = {
    "logistic": ((45.78, 33.77), (66.75, 68.56), (48.88, 24.49)),
    "softmax": ((48.67, 37.06), (67.34, 67.51), (47.46, 23.51)),
    "sparsemax": ((49.44, 39.13), (66.38, 66.07), (48.47, 26.20)),
    "SDLGM-Dis": ((50.75, 42.31), (70.99, 70.86), (49.58, 20.49)),
    "SDLGM-Gen": ((49.96, 41.68), (71.35, 71.07), (44.22, 20.17)),
    "SDLGM-Con": ((50.67, 43.15), (71.45, 71.22), (45.40, 25.74)),
}
CELLS = (("micro", "micro_f1_mean", 0), ("macro (harmonic)", "macro_f1_harmonic_mean", 1))
NAMES = {"birds": "Birds", "emotions": "Emotions", "cal500": "CAL500"}


def is_sdlgm(method: str) -> bool:
    return method.startswith("SDLGM")


def paper_row(method: str) -> tuple[tuple[float, float], ...] | None:
    """The paper's row of one of our methods ("logistic (one-vs-rest)" is the paper's "logistic")."""
    return PAPER.get(method.split(" ")[0])


def paper_best(dataset: str, column: int, sdlgm: bool) -> tuple[str, float]:
    i = SETS.index(dataset)
    return max(((m, v[i][column]) for m, v in PAPER.items() if is_sdlgm(m) == sdlgm), key=lambda t: t[1])


def ours_best(rows: list[dict[str, Any]], dataset: str, key: str, sdlgm: bool) -> tuple[str, float] | None:
    mine = [(r["method"], 100 * r[key]) for r in rows if r["dataset"] == dataset and is_sdlgm(r["method"]) == sdlgm]
    return max(mine, key=lambda t: t[1]) if mine else None


def _signed(v: float) -> str:
    """v with its sign at 2 decimals; a gap that rounds to zero is +0.00, never -0.00."""
    v = round(v, 2)
    return f"{v + 0.0:+.2f}"


def _datasets(rows: list[dict[str, Any]]) -> list[str]:
    """The named sets in SETS order, then any other set measured, in the order of the rows."""
    seen = [r["dataset"] for r in rows]
    return [d for d in SETS if d in seen] + [d for d in dict.fromkeys(seen) if d not in SETS]


def _pm(r: dict[str, Any], key: str, bold: bool) -> str:
    text = f"{100 * r[f'{key}_mean']:.2f} ± {100 * r[f'{key}_std']:.2f}"
    return f"**{text}**" if bold else text


def cell_tables(rows: list[dict[str, Any]], level: str) -> list[str]:
    """One table per data set: every method's micro and harmonic macro F1 beside the paper's, and our
    per-label mean; bold = our best in the column."""
    out: list[str] = []
    for ds in _datasets(rows):
        mine = [r for r in rows if r["dataset"] == ds]
        best = {k: max(100 * r[f"{k}_mean"] for r in mine) for k in ("micro_f1", "macro_f1_harmonic", "macro_f1")}
        out += [f"{level} {NAMES.get(ds, ds)}", "", "| method | micro (ours) | micro (paper) | macro harmonic (ours) | "
                "macro harmonic (paper) | macro per-label mean (ours; the paper has none) |", "|---|---|---|---|---|---|"]
        for r in mine:
            paper = paper_row(r["method"]) if ds in SETS else None
            p = ("-", "-") if paper is None else (f"{paper[SETS.index(ds)][0]:.2f}", f"{paper[SETS.index(ds)][1]:.2f}")
            cells = [_pm(r, k, 100 * r[f"{k}_mean"] == best[k]) for k in ("micro_f1", "macro_f1_harmonic", "macro_f1")]
            out.append(f"| {r['method']} | {cells[0]} | {p[0]} | {cells[1]} | {p[1]} | {cells[2]} |")
        out.append("")
    return out


def best_table(rows: list[dict[str, Any]]) -> list[str]:
    """Our best SDLGM against the paper's best SDLGM and our best baseline, per cell of the paper's sets."""
    out = ["| data set | F1 | our best SDLGM | paper's best SDLGM | gap to the paper | our best baseline | "
           "gap to it |", "|---|---|---|---|---|---|---|"]
    for ds in (d for d in SETS if d in _datasets(rows)):
        for name, key, col in CELLS:
            ours, base = ours_best(rows, ds, key, True), ours_best(rows, ds, key, False)
            if ours is None or base is None:
                continue
            pm, pv = paper_best(ds, col, True)
            out.append(f"| {NAMES[ds]} | {name} | {ours[1]:.2f} ({ours[0]}) | {pv:.2f} ({pm}) | {_signed(ours[1] - pv)} | "
                       f"{base[1]:.2f} ({base[0]}) | {_signed(ours[1] - base[1])} |")
    return out + [""]


def verdict(rows: list[dict[str, Any]]) -> list[str]:
    """One line per data set: the cells where our best SDLGM beats the paper's best SDLGM and our best
    baseline, and where it does not."""
    out = []
    for ds in (d for d in SETS if d in _datasets(rows)):
        gaps: dict[str, list[tuple[str, float]]] = {"the paper's best SDLGM": [], "our best baseline": []}
        for name, key, col in CELLS:
            ours, base = ours_best(rows, ds, key, True), ours_best(rows, ds, key, False)
            if ours is None:
                continue
            gaps["the paper's best SDLGM"].append((name, ours[1] - paper_best(ds, col, True)[1]))
            if base is not None:
                gaps["our best baseline"].append((name, ours[1] - base[1]))
        parts = []
        for against, cells in gaps.items():
            won = ", ".join(f"{n} {_signed(g)}" for n, g in cells if g > 0) or "no cell"
            lost = ", ".join(f"{n} {_signed(g)}" for n, g in cells if g <= 0) or "no cell"
            parts.append(f"against {against} it wins {won} and loses {lost}")
        out.append(f"- {NAMES[ds]}: {'; '.join(parts)}.")
    return out + [""]


def baseline_table(rows: list[dict[str, Any]]) -> list[str]:
    """Our baselines against the paper's (Martins & Astudillo's), cell by cell: ours - theirs."""
    out = ["| data set | baseline | micro: ours - paper | macro harmonic: ours - paper |", "|---|---|---|---|"]
    for ds in (d for d in SETS if d in _datasets(rows)):
        for r in rows:
            paper = paper_row(r["method"])
            if r["dataset"] != ds or is_sdlgm(r["method"]) or paper is None:
                continue
            i = SETS.index(ds)
            out.append(f"| {NAMES[ds]} | {r['method']} | {_signed(100 * r['micro_f1_mean'] - paper[i][0])} | "
                       f"{_signed(100 * r['macro_f1_harmonic_mean'] - paper[i][1])} |")
    return out + [""]


def _where(value: float, lo: float, hi: float) -> str:
    return "inside" if lo <= value <= hi else f"{'above' if value > hi else 'below'} by {abs(value - (hi if value > hi else lo)):.2f}"


def fold_ranges(rows: list[dict[str, Any]]) -> list[str]:
    """For the sets measured by outer folds, each method's lowest and highest fold beside the paper's
    figure, and where the paper's figure lies: where one fixed 80/20 train/test split could land."""
    out = ["| data set | method | micro: folds min - max | paper's micro | macro harmonic: folds min - max | "
           "paper's macro |", "|---|---|---|---|---|---|"]
    for r in rows:
        if not str(r.get("split", "")).startswith("outer") or not r.get("per_run"):
            continue
        paper = paper_row(r["method"]) if r["dataset"] in SETS else None
        cells = []
        for key, col in (("micro_f1", 0), ("macro_f1_harmonic", 1)):
            vals = [100 * run[key] for run in r["per_run"]]
            lo, hi = min(vals), max(vals)
            cells.append(f"{lo:.2f} - {hi:.2f}")
            cells.append("-" if paper is None else f"{paper[SETS.index(r['dataset'])][col]:.2f} "
                         f"({_where(paper[SETS.index(r['dataset'])][col], lo, hi)})")
        out.append(f"| {NAMES.get(r['dataset'], r['dataset'])} | {r['method']} | {' | '.join(cells)} |")
    return out + [""] if len(out) > 2 else []


def objective(row: dict[str, Any]) -> str:
    """A row's CV criterion; rows written before criteria were recorded are "mean"."""
    return str(row.get("objective", "mean"))


def per_column(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of one model per column: the micro figures of the rows picked on micro F1 beside the harmonic
    figures of the rows picked on harmonic macro F1, for each (data set, method) that has both."""
    by = {(r["dataset"], r["method"], objective(r)): r for r in rows}
    out = []
    for (ds, method, obj), mic in by.items():
        har = by.get((ds, method, "harmonic"))
        if obj != "micro" or har is None:
            continue
        runs = [{"micro_f1": a["micro_f1"], "macro_f1_harmonic": b["macro_f1_harmonic"]}
                for a, b in zip(mic.get("per_run") or [], har.get("per_run") or [], strict=False)]
        out.append({"dataset": ds, "method": method, "split": mic.get("split"), "per_run": runs,
                    "micro_f1_mean": mic["micro_f1_mean"], "micro_f1_std": mic["micro_f1_std"],
                    "macro_f1_harmonic_mean": har["macro_f1_harmonic_mean"],
                    "macro_f1_harmonic_std": har["macro_f1_harmonic_std"],
                    "seconds": 0.0})
    return out


def per_column_tables(rows: list[dict[str, Any]]) -> list[str]:
    """One table per data set of the one-model-per-column rows beside the paper's."""
    out: list[str] = []
    for ds in _datasets(rows):
        mine = [r for r in rows if r["dataset"] == ds]
        best = {k: max(100 * r[f"{k}_mean"] for r in mine) for k in ("micro_f1", "macro_f1_harmonic")}
        out += [f"#### {NAMES.get(ds, ds)}, one model per column", "",
                "| method | micro (ours, picked on micro) | micro (paper) | macro harmonic (ours, picked on it) | "
                "macro harmonic (paper) |", "|---|---|---|---|---|"]
        for r in mine:
            paper = paper_row(r["method"]) if ds in SETS else None
            p = ("-", "-") if paper is None else (f"{paper[SETS.index(ds)][0]:.2f}", f"{paper[SETS.index(ds)][1]:.2f}")
            cells = [_pm(r, k, 100 * r[f"{k}_mean"] == best[k]) for k in ("micro_f1", "macro_f1_harmonic")]
            out.append(f"| {r['method']} | {cells[0]} | {p[0]} | {cells[1]} | {p[1]} |")
        out.append("")
    return out


def describe(protocol: dict[str, Any]) -> str:
    """A row's protocol options in words; rows written before the options were recorded ran the defaults."""
    words = [f"{protocol.get('grid', 'default')} grid"]
    if protocol.get("ensemble", 1) > 1:
        words.append(f"ensembles of {protocol['ensemble']} seeds")
    words.append("one threshold per label" if protocol.get("rules") == "per-label" else "one rule value for all labels")
    return ", ".join(words)


def protocols(rows: list[dict[str, Any]]) -> list[str]:
    """One line per data set: the methods grouped by the protocol options their rows ran with."""
    out = []
    for ds in _datasets(rows):
        groups: dict[str, list[str]] = {}
        for r in rows:
            if r["dataset"] == ds and r["method"] not in groups.get(describe(r.get("protocol") or {}), []):
                groups.setdefault(describe(r.get("protocol") or {}), []).append(r["method"])
        out.append(f"- {NAMES.get(ds, ds)}: " + "; ".join(f"{', '.join(m)}: {d}" for d, m in groups.items()) + ".")
    return out + [""]


def doc_block(rows: list[dict[str, Any]]) -> str:
    """The generated part of docs/results.md's Table II section."""
    one = [r for r in rows if objective(r) == "mean"]
    out = ["F1 in %, ours: mean ± std over the reruns (rows of `docs/results/table2.json`); the paper's: its Table II "
           "(`PAPER` in `benchmarks/table2_report.py`). The paper's Macro-F1 is the harmonic mean of macro precision "
           "and macro recall: it stands beside our harmonic column. Bold: our best in the column. One model per "
           "method and data set, picked by inner CV on (micro F1 + per-label macro F1) / 2.", "",
           "The protocol options each set's rows ran with (`benchmarks/table2.py --grid --ensemble --rules`; the "
           "rows' `protocol`):", ""]
    out += protocols(rows)
    out += cell_tables(one, "###")
    out += ["### Our best SDLGM against the paper's best SDLGM and our best baseline", ""] + best_table(one)
    out += verdict(one)
    out += ["### Our baselines against the paper's", ""] + baseline_table(one)
    ranges = fold_ranges(one)
    if ranges:
        out += ["### Sets measured by outer folds: the range over the folds", ""] + ranges
    cols = per_column(rows)
    if cols:
        out += ["### One model per column", "",
                "The same protocol with the inner CV maximizing the column's own F1: the micro column from models "
                "picked on micro F1, the harmonic column from models picked on harmonic macro F1 (two models per "
                "method and data set; `--objectives micro harmonic`).", ""]
        out += per_column_tables(cols)
        out += ["#### Our best SDLGM against the paper's best SDLGM and our best baseline, one model per column", ""]
        out += best_table(cols) + verdict(cols)
        out += ["#### Our baselines against the paper's, one model per column", ""] + baseline_table(cols)
        ranges = fold_ranges(cols)
        if ranges:
            out += ["#### Sets measured by outer folds, one model per column: the range over the folds", ""] + ranges
    seconds = {ds: sum(float(r.get("seconds", 0.0)) for r in one if r["dataset"] == ds) for ds in _datasets(one)}
    out += ["Run time of the rows on this machine (the methods' `seconds`, summed; a run of several criteria "
            "counts once): " + ", ".join(f"{NAMES.get(d, d)} {v:.0f} s" for d, v in seconds.items()) + ".", ""]
    return "\n".join(out).rstrip("\n") + "\n"


def markdown(rows: list[dict[str, Any]]) -> str:
    """docs/results/table2.md: the same tables on a page of their own."""
    head = ["# Table II beside the paper (F1 in %)", "",
            "Generated by `python benchmarks/table2_report.py` from `docs/results/table2.json` (our runs, "
            "`make reproduce-table2`) and the paper's Table II. `docs/results.md` says what each protocol does.", ""]
    return "\n".join(head) + "\n" + doc_block(rows).replace("\n### ", "\n## ").replace("\n#### ", "\n### ")


def write_doc(doc: Path, block: str) -> None:
    """Replace the text between DOC_BEGIN and DOC_END in doc with block."""
    text = doc.read_text()
    if DOC_BEGIN not in text or DOC_END not in text:
        raise SystemExit(f"{doc} has no '{DOC_BEGIN}' ... '{DOC_END}' part to write; add the two lines where the "
                         "Table II figures go")
    start, end = text.index(DOC_BEGIN) + len(DOC_BEGIN), text.index(DOC_END)
    doc.write_text(text[:start] + "\n" + block + text[end:])


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default=str(ROOT / "docs" / "results"))
    p.add_argument("--doc", type=Path, default=DOC, help="the document whose generated Table II part is rewritten")
    args = p.parse_args(argv)
    results = Path(args.results)
    rows = json.loads((results / "table2.json").read_text())
    (results / "table2.md").write_text(markdown(rows))
    write_doc(args.doc, doc_block(rows))
    print(f"wrote {results / 'table2.md'} and the Table II part of {args.doc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
