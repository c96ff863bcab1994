"""The Table II protocol's options (training/multilabel.py `methods`, benchmarks/table2.py --grid, --ensemble,
--rules): ensembles average their members, per-label thresholds against brute force, the wide grid's
SDLGM-Con temperature reaching the model, the options recorded in the rows and named by the report, and
per-label thresholds exported into a bundle's manifest."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from bundle.manifest import load_manifest
from training import datasets, multilabel
from training.bundle_eval import f1_scores

TINY = {"L0": 3, "hidden": 8, "epochs": 2, "weight_decay": 0.01}


def _toy(seed: int = 0, n: int = 60, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5)).astype(np.float32)
    Y = (X[:, :k] + 0.5 * rng.normal(size=(n, k)) > 0.3).astype(np.float32)
    Y[Y.sum(1) == 0, 0] = 1
    return X, Y


def test_an_ensemble_averages_its_members_probabilities() -> None:
    assert multilabel.ensemble_seeds(4, 1) == [4]  # one member: the rerun's own seed, as before the option
    assert multilabel.ensemble_seeds(2, 3) == [6, 7, 8] and multilabel.ensemble_seeds(1, 3) == [3, 4, 5]
    X, Y = _toy()
    fit = multilabel.methods()[0].fit  # SDLGM-Dis
    got = fit(X, Y, {**TINY, "ensemble": 2}, 1)(X)
    members = [multilabel.label_scores(multilabel.train_dis(X, Y, TINY, s), X) for s in (2, 3)]
    assert np.allclose(got, np.mean(members, axis=0), atol=1e-6)
    assert not np.allclose(got, members[0], atol=1e-4)
    assert np.array_equal(fit(X, Y, TINY, 1)(X), multilabel.label_scores(multilabel.train_dis(X, Y, TINY, 1), X))


def test_per_label_thresholds_reach_the_brute_force_optimum() -> None:
    """The per-label mean of F1 is a sum over labels, so coordinate ascent must find the best of all
    len(rules)^K threshold vectors; and it never does worse than the best single threshold."""
    rng = np.random.default_rng(1)
    Y = (rng.random((80, 3)) < [0.2, 0.5, 0.7]).astype(np.float32)
    scores = np.clip(0.35 * Y + rng.normal(0.15, 0.15, size=Y.shape) * [0.5, 1.0, 2.0], 0, 1)
    folds = np.array_split(rng.permutation(80), 4)
    rules = multilabel.THRESHOLDS

    def value(t: np.ndarray, key: str) -> float:
        return float(np.mean([f1_scores(Y[b], scores[b] >= t)[key] for b in folds]))

    brute = max(value(np.array(t), "macro_f1") for t in itertools.product(rules, repeat=3))
    start = max(rules, key=lambda r: value(np.full(3, r), "macro_f1"))
    t, v = multilabel.per_label_rule(Y, scores, folds, rules, lambda s: s["macro_f1"], start)
    assert v == pytest.approx(brute) and value(np.array(t), "macro_f1") == pytest.approx(brute)
    assert len(set(t)) > 1 and set(t) <= set(rules)
    # micro F1 does not decompose: still at least as good as the start
    t, v = multilabel.per_label_rule(Y, scores, folds, rules, lambda s: s["micro_f1"], 0.25)
    assert v >= value(np.full(3, 0.25), "micro_f1")


def test_select_with_per_label_rules_gives_one_threshold_per_label() -> None:
    X, Y = _toy(2, n=100)
    for rules in ("global", "per-label"):
        logistic = next(m for m in multilabel.methods(rules=rules) if m.name.startswith("logistic"))
        hp, rule = multilabel.select(logistic, X, Y, folds=3)["mean"]
        if rules == "global":
            assert isinstance(rule, float)
        else:
            assert isinstance(rule, list) and len(rule) == Y.shape[1] and set(rule) <= set(multilabel.THRESHOLDS)
            assert logistic.protocol == {"grid": "default", "rules": "per-label"}
    # the rules of softmax and sparsemax are not per-label thresholds: they keep one value
    assert not any(m.per_label for m in multilabel.methods(rules="per-label") if m.name in ("softmax", "sparsemax"))


def test_the_wide_grid_searches_decay_and_the_con_temperature() -> None:
    Y = np.eye(4, dtype=np.float32)[[0, 1, 2, 3, 0]]
    by = {m.name: m for m in multilabel.methods(grid="wide", ensemble=3)}
    assert {hp["tau"] for hp in by["SDLGM-Con"].grid(Y)} == {1.0, 3.0}
    assert {hp["weight_decay"] for hp in by["SDLGM-Dis"].grid(Y)} == {0.3, 1.0, 3.0, 10.0}
    assert all(hp["ensemble"] == 3 for m in ("SDLGM-Dis", "SDLGM-Gen", "SDLGM-Con") for hp in by[m].grid(Y))
    assert {hp["tau"] for hp in multilabel.methods()[2].grid(Y)} == {1.0}
    X, Yt = _toy()
    con = multilabel.train_con(X, Yt, {**TINY, "alpha": 1.0, "Kz": 4, "L0z": 2, "tau": 3.0}, 0)
    assert con.cfg.tau == 3.0
    with pytest.raises(ValueError, match="grid must be one of"):
        multilabel.methods(grid="huge")


def test_table2_records_the_options_in_its_rows(tmp_path: Path) -> None:
    import table2
    from table2_report import markdown

    assert table2.main(["--quick", "--sets", "emotions", "--methods", "SDLGM-Dis", "logistic (one-vs-rest)",
                        "--ensemble", "2", "--rules", "per-label", "--out", str(tmp_path)]) == 0
    rows = {r["method"]: r for r in json.loads((tmp_path / "table2.json").read_text())}
    assert rows["SDLGM-Dis"]["protocol"] == {"grid": "default", "ensemble": 2, "rules": "per-label"}
    hp = rows["SDLGM-Dis"]["hyperparameters"][0]
    assert hp["ensemble"] == 2 and isinstance(hp["rule"], list) and len(hp["rule"]) == 6
    assert isinstance(rows["logistic (one-vs-rest)"]["hyperparameters"][0]["rule"], list)
    assert ("- Emotions: SDLGM-Dis: default grid, ensembles of 2 seeds, one threshold per label; "
            "logistic (one-vs-rest): default grid, one threshold per label.") in markdown(list(rows.values()))
    with pytest.raises(SystemExit):  # an ensemble is not one bundle
        table2.main(["--quick", "--sets", "emotions", "--ensemble", "2", "--export", str(tmp_path / "m")])


def test_per_label_thresholds_go_into_the_bundle(tmp_path: Path) -> None:
    train, test = datasets.load_mulan("emotions", datasets.data_dir())
    assert test is not None
    tr, te = datasets.drop_unlabelled(train), datasets.drop_unlabelled(test)
    Xa, _ = multilabel.standardize(tr.X, te.X)
    model = multilabel.train_dis(Xa, tr.Y, TINY, 0)
    rule = [0.1, 0.2, 0.3, 0.35, 0.4, 0.45]
    multilabel.export_supervised(model, tr.X, tmp_path / "emo", "emo", "1.0.0", tr, rule, "SDLGM-Dis", te, TINY)
    assert load_manifest(tmp_path / "emo").thresholds == rule
