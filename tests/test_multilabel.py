"""Table II's parts: sparsemax and its loss against brute force, the ARFF/XML reader on the three Mulan
sets, the protocol's folds, and a tiny end-to-end run of benchmarks/table2.py."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from training import datasets, multilabel

SIZES = {"emotions": (72, 6), "birds": (272, 19), "cal500": (68, 174)}


def _project_brute_force(z: np.ndarray) -> np.ndarray:
    """The Euclidean projection onto the simplex by trying every support: on support S the projection is
    z_S - tau with tau = (sum z_S - 1) / |S|; keep the feasible candidate closest to z."""
    best, best_d = None, np.inf
    for r in range(1, len(z) + 1):
        for S in itertools.combinations(range(len(z)), r):
            p = np.zeros_like(z)
            p[list(S)] = z[list(S)] - (z[list(S)].sum() - 1) / r
            if (p >= -1e-12).all() and np.sum((p - z) ** 2) < best_d:
                best, best_d = p, np.sum((p - z) ** 2)
    assert best is not None
    return best


@pytest.mark.parametrize("seed", range(6))
def test_sparsemax_is_the_projection_onto_the_simplex(seed: int) -> None:
    z = np.random.default_rng(seed).normal(scale=[0.3, 1.0, 3.0][seed % 3], size=(5,))
    got = multilabel.sparsemax(torch.from_numpy(z)).numpy()
    assert np.allclose(got, _project_brute_force(z), atol=1e-10)
    assert got.sum() == pytest.approx(1.0) and (got >= 0).all()


def test_sparsemax_loss_value_and_gradient() -> None:
    """The loss is 1/2 |q - p|^2-like: at z = q on the simplex interior it is 0; its gradient is p - q."""
    torch.manual_seed(0)
    z = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    q = torch.softmax(torch.randn(4, 6, dtype=torch.float64), -1)
    multilabel.sparsemax_loss(z, q).sum().backward()
    assert z.grad is not None
    assert torch.allclose(z.grad, multilabel.sparsemax(z.detach()) - q, atol=1e-10)
    # brute force: the loss equals max_p (z.p - |p|^2 / 2) - z.q + |q|^2 / 2 (its Fenchel form); p = sparsemax(z)
    p = multilabel.sparsemax(z.detach())
    fenchel = (z.detach() * p).sum(-1) - 0.5 * (p**2).sum(-1) - (z.detach() * q).sum(-1) + 0.5 * (q**2).sum(-1)
    assert torch.allclose(multilabel.sparsemax_loss(z.detach(), q), fenchel, atol=1e-10)
    target = torch.tensor([[0.2, 0.3, 0.5, 0.0]], dtype=torch.float64)
    assert float(multilabel.sparsemax_loss(target.clone(), target)) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("name", list(datasets.MULAN_SETS))
def test_reader_on_each_mulan_set(name: str) -> None:
    train, test = datasets.load_mulan(name, datasets.data_dir())
    D, K = SIZES[name]
    assert train.X.shape[1] == D and train.Y.shape[1] == K and len(train.label_names) == K
    assert (test is None) == (name == "cal500")
    kept = datasets.drop_unlabelled(train)
    assert kept.Y.any(1).all() and np.isfinite(kept.X).all()


def test_outer_folds_standardize_on_the_training_part_only() -> None:
    train, test = datasets.load_mulan("emotions", datasets.data_dir())
    folds = multilabel.outer_folds(train, test, 3)
    assert [f.seed for f in folds] == [0, 1, 2]
    assert np.allclose(folds[0].X_train.mean(0), 0, atol=1e-4) and not np.allclose(folds[0].X_test.mean(0), 0, atol=1e-3)
    cal, _ = datasets.load_mulan("cal500", datasets.data_dir())
    kf = multilabel.outer_folds(cal, None, 5)
    assert sum(len(f.X_test) for f in kf) == len(datasets.drop_unlabelled(cal).X)


def test_table2_quick_run_on_emotions(tmp_path: Path) -> None:
    import table2

    assert table2.main(["--quick", "--sets", "emotions", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "table2.json").read_text())
    assert {r["method"] for r in rows} == {m.name for m in multilabel.methods()}
    keys = {"dataset", "method", "micro_f1_mean", "micro_f1_std", "macro_f1_mean", "macro_f1_std",
            "macro_f1_harmonic_mean", "hyperparameters"}
    assert all(keys <= set(r) and 0 <= r["micro_f1_mean"] <= 1 for r in rows)


def test_table2_accepts_any_arff_xml_pair(tmp_path: Path) -> None:
    import table2

    mulan = datasets.data_dir() / "mulan"
    assert table2.main(["--quick", "--arff", str(mulan / "emotions-train.arff"), "--xml", str(mulan / "emotions.xml"),
                        "--name", "mine", "--methods", "logistic (one-vs-rest)", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "table2.json").read_text())
    assert [r["dataset"] for r in rows] == ["mine"]


def test_table2_replaces_only_the_rows_it_ran(tmp_path: Path) -> None:
    import table2

    f1s = {"micro_f1_std": 0.0, "macro_f1_mean": 0.3, "macro_f1_std": 0.0, "macro_f1_harmonic_mean": 0.3,
           "macro_f1_harmonic_std": 0.0}
    other_set = {"dataset": "other", "method": "logistic (one-vs-rest)", "micro_f1_mean": 0.5, **f1s}
    other_method = {"dataset": "emotions", "method": "softmax", "micro_f1_mean": 0.4, **f1s}
    stale = {"dataset": "emotions", "method": "logistic (one-vs-rest)", "micro_f1_mean": 0.1, **f1s}
    (tmp_path / "table2.json").write_text(json.dumps([other_set, other_method, stale]))
    assert table2.main(["--quick", "--sets", "emotions", "--methods", "logistic (one-vs-rest)",
                        "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "table2.json").read_text())
    assert rows[:2] == [other_set, other_method]
    assert [(r["dataset"], r["method"]) for r in rows[2:]] == [("emotions", "logistic (one-vs-rest)")]
    assert rows[2]["micro_f1_mean"] != 0.1
    assert "| softmax | 40.00 ± 0.00 | 67.34 |" in (tmp_path / "table2.md").read_text()


def test_hidden_zero_is_a_linear_encoder_and_trains() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 5)).astype(np.float32)
    Y = (X[:, :3] > 0).astype(np.float32)
    Y[Y.sum(1) == 0, 0] = 1
    hp = {"L0": 3, "hidden": 0, "epochs": 300, "weight_decay": 0.0}
    model = multilabel.train_dis(X, Y, hp, seed=0)
    assert [type(m).__name__ for m in model.encoder] == ["Linear"]
    p = model.label_probability(torch.from_numpy(X)).detach().numpy()
    assert p.shape == Y.shape and float(np.mean((p > 0.5) == (Y > 0.5))) > 0.8  # it learned the labels


def test_f1_scores_agree_with_scikit_learn_and_the_harmonic_definition() -> None:
    from sklearn.metrics import f1_score, precision_score, recall_score

    from training.bundle_eval import f1_scores

    rng = np.random.default_rng(0)
    y = rng.random((50, 6)) < 0.3
    pred = rng.random((50, 6)) < 0.35
    y[:, 5] = pred[:, 5] = False  # a label never present nor predicted: sklearn's zero_division=0
    s = f1_scores(y, pred)
    assert s["micro_f1"] == pytest.approx(f1_score(y, pred, average="micro", zero_division=0))
    assert s["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro", zero_division=0))
    p = precision_score(y, pred, average="macro", zero_division=0)
    r = recall_score(y, pred, average="macro", zero_division=0)
    assert s["macro_f1_harmonic"] == pytest.approx(2 * p * r / (p + r))


def test_the_table2_report_sets_the_papers_rows_beside_ours() -> None:
    from table2_report import markdown

    def row(method: str, micro: float, harmonic: float) -> dict[str, object]:
        return {"dataset": "emotions", "method": method, "micro_f1_mean": micro, "micro_f1_std": 0.01,
                "macro_f1_mean": harmonic - 0.01, "macro_f1_std": 0.0, "macro_f1_harmonic_mean": harmonic,
                "macro_f1_harmonic_std": 0.0}

    text = markdown([row("SDLGM-Dis", 0.72, 0.70), row("logistic (one-vs-rest)", 0.68, 0.69),
                     {**row("SDLGM-Dis", 0.5, 0.4), "dataset": "mine"}])
    assert "| SDLGM-Dis | **72.00 ± 1.00** | 70.99 | **70.00 ± 0.00** | 70.86 | **69.00 ± 0.00** |" in text
    assert "| logistic (one-vs-rest) | 68.00 ± 1.00 | 66.75 | 69.00 ± 0.00 | 68.56 |" in text
    # best SDLGM 72.00 against the paper's best SDLGM micro 71.45 (SDLGM-Con) and our baseline 68.00
    assert "| Emotions | micro | 72.00 (SDLGM-Dis) | 71.45 (SDLGM-Con) | +0.55 | 68.00 (logistic (one-vs-rest)) | +4.00 |" in text
    assert "| Emotions | macro (harmonic) | 70.00 (SDLGM-Dis) | 71.22 (SDLGM-Con) | -1.22 |" in text
    assert "| Emotions | logistic (one-vs-rest) | +1.25 | +0.44 |" in text  # ours - the sparsemax paper's
    assert "## Mine" not in text and "## mine" in text and "| SDLGM-Dis | **50.00 ± 1.00** | - |" in text
    assert "## Birds" not in text


def test_the_report_gives_the_fold_range_of_sets_measured_by_outer_folds() -> None:
    from table2_report import fold_ranges

    runs = [{"micro_f1": m, "macro_f1": 0.2, "macro_f1_harmonic": h} for m, h in ((0.44, 0.21), (0.49, 0.25))]
    rows = [{"dataset": "cal500", "method": "logistic (one-vs-rest)", "split": "outer 5-fold", "per_run": runs},
            {"dataset": "emotions", "method": "softmax", "split": "train/test files", "per_run": runs}]
    assert fold_ranges(rows)[2:] == [
        "| CAL500 | logistic (one-vs-rest) | 44.00 - 49.00 | 48.88 (inside) | 21.00 - 25.00 | 24.49 (inside) |", ""]
    rows[0]["per_run"] = [{**r, "micro_f1": r["micro_f1"] - 0.01} for r in runs]
    assert "| 43.00 - 48.00 | 48.88 (above by 0.88) |" in fold_ranges(rows)[2]
    assert fold_ranges(rows[1:]) == []


def test_the_committed_results_doc_is_what_the_report_writes(tmp_path: Path) -> None:
    """docs/results.md's Table II figures are the report's output on the committed table2.json, untouched."""
    from table2_report import DOC, main

    doc = tmp_path / "results.md"
    doc.write_text(DOC.read_text())
    results = tmp_path / "results"
    results.mkdir()
    (results / "table2.json").write_text((DOC.parent / "results" / "table2.json").read_text())
    assert main(["--results", str(results), "--doc", str(doc)]) == 0
    assert doc.read_text() == DOC.read_text()
    assert (results / "table2.md").read_text() == (DOC.parent / "results" / "table2.md").read_text()


def test_the_report_names_the_marks_it_needs(tmp_path: Path) -> None:
    from table2_report import write_doc

    doc = tmp_path / "results.md"
    doc.write_text("# no marks\n")
    with pytest.raises(SystemExit, match="has no '<!-- table2_report: begin"):
        write_doc(doc, "block\n")
