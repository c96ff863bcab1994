"""A supervised bundle trained by the Table II code (SDLGM-Dis and SDLGM-Gen on Emotions, tiny) is served
by /predict (the app in this process), and its answers match torch's label probabilities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import open_app, settings_of

from bundle.manifest import load_manifest
from training import datasets, multilabel

HP = {"L0": 3, "hidden": 16, "epochs": 2, "weight_decay": 0.01, "alpha": 1.0}


def test_table2_bundles_are_served_by_predict(tmp_path: Path) -> None:
    train, test = datasets.load_mulan("emotions", datasets.data_dir())
    assert test is not None
    tr, te = datasets.drop_unlabelled(train), datasets.drop_unlabelled(test)
    Xa, _ = multilabel.standardize(tr.X, te.X)
    models = {"emo-dis": ("SDLGM-Dis", multilabel.train_dis(Xa, tr.Y, HP, 0)),
              "emo-con": ("SDLGM-Con", multilabel.train_con(Xa, tr.Y, {**HP, "Kz": 4, "L0z": 2}, 0)),
              "emo-gen": ("SDLGM-Gen", multilabel.train_gen(Xa, tr.Y, HP, 0))}
    for name, (variant, model) in models.items():
        multilabel.export_supervised(model, tr.X, tmp_path / "models" / name, name, tr, 0.3, variant)
        m = load_manifest(tmp_path / "models" / name)
        assert m.kind == "sdlgm-dis" and m.training["variant"] == variant and m.labels == tr.label_names
    x = te.X[:5]
    with open_app(settings_of(models_dir=tmp_path / "models", default_model="emo-dis", provider="cpu")) as client:
        for name, (_, model) in models.items():
            r = client.post("/predict", params={"model": name}, json={"vectors": x.tolist()})
            assert r.status_code == 200, r.text
            dis = model if isinstance(model, multilabel.SDLGMDis) else model.dis
            want = dis.label_probability(torch.from_numpy((x - dis.x_mean.numpy()) / dis.x_std.numpy())).numpy()
            for pred, row in zip(r.json()["predictions"], want, strict=True):
                got = np.array([pred["probabilities"][lb] for lb in tr.label_names])
                assert got == pytest.approx(row, abs=1e-5)
                assert pred["labels"] == [lb for lb, p in zip(tr.label_names, row, strict=True) if p >= 0.3]
