"""A supervised bundle trained by the Table II code (SDLGM-Dis and SDLGM-Gen on Emotions, tiny) is served
by /predict (the app in this process), and its answers match torch's label probabilities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import open_app, settings_of

from bundle.manifest import load_manifest
from model import registry
from training import datasets, multilabel

HP = {"L0": 3, "hidden": 16, "epochs": 2, "weight_decay": 0.01, "alpha": 1.0}


def test_table2_bundles_are_served_by_predict(tmp_path: Path) -> None:
    train, test = datasets.load_mulan("emotions", datasets.data_dir())
    assert test is not None
    tr, te = datasets.drop_unlabelled(train), datasets.drop_unlabelled(test)
    Xa, _ = multilabel.standardize(tr.X, te.X)
    con_hp = {**HP, "Kz": 4, "L0z": 2}
    models = {"emo-dis": ("SDLGM-Dis", HP, multilabel.train_dis(Xa, tr.Y, HP, 0)),
              "emo-con": ("SDLGM-Con", con_hp, multilabel.train_con(Xa, tr.Y, con_hp, 0)),
              "emo-gen": ("SDLGM-Gen", HP, multilabel.train_gen(Xa, tr.Y, HP, 0))}
    for name, (variant, hp, model) in models.items():
        multilabel.export_supervised(model, tr.X, tmp_path / "models" / name, name, "2.0.1", tr, 0.3, variant, te, hp)
        m = load_manifest(tmp_path / "models" / name)
        assert m.kind == "sdlgm-dis" and m.training["variant"] == variant and m.labels == tr.label_names
        assert m.version == "2.0.1" and m.training["hyperparameters"] == hp
        saved = m.training["model"]
        assert isinstance(saved, dict) and registry.family(saved["kind"]).rebuild(saved["config"]).cfg == model.cfg
        assert m.evaluation["rows"] == len(te.X) and 0 < float(str(m.evaluation["micro_f1"])) <= 1
    x = te.X[:5]
    with open_app(settings_of(models_dir=tmp_path / "models", default_model="emo-dis", provider="cpu")) as client:
        for name, (_, _, model) in models.items():
            r = client.post("/predict", params={"model": name}, json={"vectors": x.tolist()})
            assert r.status_code == 200, r.text
            coder = model.deployed()
            assert coder is not None
            xs = torch.from_numpy((x - coder.x_mean.numpy()) / coder.x_std.numpy())
            want = model.label_probability(xs).numpy()
            for pred, row in zip(r.json()["predictions"], want, strict=True):
                got = np.array([pred["probabilities"][lb] for lb in tr.label_names])
                assert got == pytest.approx(row, abs=1e-5)
                assert pred["labels"] == [lb for lb, p in zip(tr.label_names, row, strict=True) if p >= 0.3]
