"""The Table II protocol on a Mulan set that is not one of the named three: a tiny ARFF + XML written here
(a train/test pair and a one-file set) runs through benchmarks/table2.py end to end with the quick budget,
and the bundles it exports are served by /predict (the app in this process) with their thresholds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import open_app, settings_of

from bundle.manifest import load_manifest

LABELS = ["red", "green", "blue"]
FEATURES = ["f0", "f1", "f2", "f3"]


def write_arff(path: Path, X: np.ndarray, Y: np.ndarray) -> Path:
    """A dense Mulan ARFF: numeric features, then {0,1} labels."""
    head = ["@relation tiny"] + [f"@attribute {f} numeric" for f in FEATURES]
    head += [f"@attribute {lb} {{0,1}}" for lb in LABELS] + ["@data"]
    body = [",".join([f"{v:.4f}" for v in x] + [str(int(v)) for v in y]) for x, y in zip(X, Y, strict=True)]
    path.write_text("\n".join(head + body) + "\n")
    return path


def tiny_set(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    """(train ARFF, test ARFF, one-file ARFF, XML): 3 labels, each switched on by one feature."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(90, 4))
    Y = (X[:, :3] > 0.3).astype(int)
    Y[Y.sum(1) == 0, 0] = 1
    Y[:3] = 0  # label-less rows: the protocol drops them
    xml = tmp_path / "tiny.xml"
    xml.write_text('<?xml version="1.0" encoding="utf-8"?>\n<labels xmlns="http://mulan.sourceforge.net/labels">'
                   + "".join(f'<label name="{lb}"/>' for lb in LABELS) + "</labels>\n")
    return (write_arff(tmp_path / "tiny-train.arff", X[:60], Y[:60]),
            write_arff(tmp_path / "tiny-test.arff", X[60:], Y[60:]),
            write_arff(tmp_path / "tiny-all.arff", X, Y), xml)


def test_any_mulan_set_runs_the_protocol_and_its_bundles_predict_with_their_thresholds(tmp_path: Path) -> None:
    import table2

    train, test, one, xml = tiny_set(tmp_path)
    models = tmp_path / "models"
    assert table2.main(["--quick", "--sets", f"pair={train},{test},{xml}", f"one={one},{xml}",
                        "--methods", "SDLGM-Dis", "SDLGM-Con", "logistic (one-vs-rest)",
                        "--export", str(models), "--out", str(tmp_path / "results")]) == 0
    rows = json.loads((tmp_path / "results" / "table2.json").read_text())
    assert {(r["dataset"], r["method"]) for r in rows} == {
        (d, m) for d in ("pair", "one") for m in ("SDLGM-Dis", "SDLGM-Con", "logistic (one-vs-rest)")}
    assert sorted(p.name for p in models.iterdir()) == ["one-sdlgm-con", "one-sdlgm-dis", "pair-sdlgm-con",
                                                         "pair-sdlgm-dis"]
    X_test = np.loadtxt(test, delimiter=",", comments="@")[:, :4]
    with open_app(settings_of(models_dir=models, default_model="pair-sdlgm-dis", provider="cpu")) as client:
        for row in (r for r in rows if r["method"].startswith("SDLGM")):
            name = f"{row['dataset']}-{row['method'].lower()}"
            m = load_manifest(models / name)
            rule = row["hyperparameters"][0]["rule"]  # rerun 0's CV-chosen threshold
            assert m.labels == LABELS and m.feature_names == FEATURES and m.thresholds == [rule] * 3
            assert m.training["variant"] == row["method"] and m.training["hyperparameters"]["dataset"] == row["dataset"]
            r = client.post("/predict", params={"model": name}, json={"vectors": X_test[:8].tolist()})
            assert r.status_code == 200, r.text
            for pred in r.json()["predictions"]:
                p = pred["probabilities"]
                assert set(p) == set(LABELS) and all(0 <= v <= 1 for v in p.values())
                assert pred["labels"] == [lb for lb in LABELS if p[lb] >= rule]


@pytest.mark.parametrize(("spec", "message"), [
    ("Bad=a.arff,b.xml", "the name 'Bad' must match"),
    ("yeast", "not a named set"),
    ("x=a.arff", "expected NAME=ARFF,XML or NAME=TRAIN_ARFF,TEST_ARFF,XML"),
    ("x=a.arff,b.arff,c.arff,d.xml", "expected NAME=ARFF,XML"),
])
def test_bad_set_specs_are_refused_with_the_form_to_use(spec: str, message: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    import table2

    with pytest.raises(SystemExit) as e:
        table2.main(["--quick", "--sets", spec])
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_more_cv_criteria_add_rows_and_leave_the_default_rows_as_they_were(tmp_path: Path) -> None:
    """--objectives mean micro harmonic: a row per criterion, and the mean rows are those of a run of mean
    alone (the criteria read the same fits; each picks its own cell)."""
    import table2

    train, test, _, xml = tiny_set(tmp_path)
    common = ["--quick", "--sets", f"pair={train},{test},{xml}", "--methods", "SDLGM-Dis", "logistic (one-vs-rest)"]
    assert table2.main([*common, "--out", str(tmp_path / "one")]) == 0
    assert table2.main([*common, "--objectives", "mean", "micro", "harmonic", "--out", str(tmp_path / "three")]) == 0
    one = json.loads((tmp_path / "one" / "table2.json").read_text())
    three = json.loads((tmp_path / "three" / "table2.json").read_text())
    assert sorted((r["method"], r["objective"]) for r in three) == sorted(
        (m, o) for m in ("SDLGM-Dis", "logistic (one-vs-rest)") for o in ("mean", "micro", "harmonic"))
    strip = ("seconds",)
    assert [{k: v for k, v in r.items() if k not in strip} for r in three if r["objective"] == "mean"] == [
        {k: v for k, v in r.items() if k not in strip} for r in one]
    md = (tmp_path / "three" / "table2.md").read_text()
    assert "## One model per column" in md and "### pair, one model per column" in md
