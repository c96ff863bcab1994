"""The trainer and the `sdlgm` CLI, called in-process through main(argv) on tiny runs of real data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from bundle.manifest import load_manifest
from training import counting, datasets
from training.bundle_eval import bundle_evaluation
from training.cli import main
from training.config import RunConfig, load_config
from training.tasks import load_task
from training.trainer import load_checkpoint, train

TINY = ["--set", "train.iterations=30", "--set", "train.eval_every=15", "--set", "train.checkpoint_every=15",
        "--no-progress"]


def test_train_eval_export_on_kpi_windows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run, bundle = tmp_path / "run", tmp_path / "bundle"
    assert main(["train", "--config", "configs/kpi5g-shared.yaml", "--out", str(run), *TINY]) == 0
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["split"]) for r in lines] == [(15, "train"), (15, "valid"), (30, "train"), (30, "valid")]
    assert {"discrete_neg_elbo", "relaxed_neg_elbo", "rmse_per_kpi", "nrmse"} <= set(lines[-1])
    assert main(["eval", "--run", str(run), "--is-samples", "5"]) == 0
    ev = json.loads((run / "eval-test.json").read_text())
    assert ev["is_samples"] == 5 and ev["discrete_neg_elbo"] > 0 and ev["mean_L_hat"] <= 4
    assert main(["export", "--run", str(run), "--out", str(bundle)]) == 0
    manifest = load_manifest(bundle)
    assert manifest.D == 80 and manifest.K == 64 and manifest.L0 == 4 and manifest.likelihood == "gaussian"
    assert manifest.feature_names[:2] == ["RSRP@t0", "RSRQ@t0"]
    task = load_task(load_config("configs/kpi5g-shared.yaml").data)
    fresh = bundle_evaluation(bundle, task.test, task.kpis)
    assert fresh["rmse_per_kpi"] == pytest.approx(manifest.evaluation["rmse_per_kpi"], rel=1e-9)
    assert fresh["compression_ratio"] > 1


@pytest.mark.parametrize("lr_final", [None, 1e-4])
def test_resume_continues_exactly(tmp_path: Path, lr_final: float | None) -> None:
    cfg = load_config("configs/kpi5g-shared.yaml", {"train.iterations": 20, "train.lr_final": lr_final, "data.stride": 10, "train.checkpoint_every": 10,
                                              "train.eval_every": 10, "model.encoder": [16], "model.decoder": [16],
                                              "model.sparsity": [8]})
    task = load_task(cfg.data)
    full, _ = train(cfg, task, tmp_path / "full", progress=False)
    train(cfg, task, tmp_path / "half", progress=False, stop_after=10)  # as if interrupted at step 10
    resumed, _ = train(cfg, task, tmp_path / "half", resume=True, progress=False)
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    _, model, _, ck = load_checkpoint(tmp_path / "half" / "checkpoint.pt")
    assert ck["step"] == 20


def test_resume_accepts_a_checkpoint_saved_before_an_option_existed_and_refuses_another_model(tmp_path: Path) -> None:
    cfg = load_config("configs/kpi5g-shared.yaml", {"train.iterations": 20, "data.stride": 10, "train.checkpoint_every": 10,
                                              "train.eval_every": 10, "model.encoder": [16], "model.decoder": [16],
                                              "model.sparsity": [8]})
    task = load_task(cfg.data)
    train(cfg, task, tmp_path / "run", progress=False, stop_after=10)
    ck_path = tmp_path / "run" / "checkpoint.pt"
    ck = torch.load(ck_path, weights_only=False)
    del ck["run_config"]["model"]["usage_weight"]  # as written before the option was added (at its default)
    torch.save(ck, ck_path)
    _, _ = train(cfg, task, tmp_path / "run", resume=True, progress=False)
    assert load_checkpoint(ck_path)[3]["step"] == 20
    other = load_config("configs/kpi5g-shared.yaml", {"train.iterations": 30, "data.stride": 10, "model.encoder": [16],
                                                "model.decoder": [16], "model.sparsity": [8], "model.L0": 3})
    with pytest.raises(ValueError, match="was trained with model"):
        train(other, task, tmp_path / "run", resume=True, progress=False)


def test_dis_on_emotions_trains_and_exports_with_labels(tmp_path: Path) -> None:
    run, bundle = tmp_path / "run", tmp_path / "bundle"
    assert main(["train", "--config", "configs/emotions-dis.yaml", "--out", str(run), *TINY]) == 0
    assert main(["export", "--run", str(run), "--out", str(bundle)]) == 0
    m = load_manifest(bundle)
    assert m.labels is not None and len(m.labels) == 6 and m.thresholds is not None
    assert m.labels[0] == "amazed-suprised" and m.graphs.decoder is None


@pytest.mark.parametrize("config, kind", [("configs/emotions-gen.yaml", "sdlgm-gen"),
                                          ("configs/emotions-con.yaml", "sdlgm-con")])
def test_gen_and_con_train_evaluate_and_export_from_their_configs(tmp_path: Path, config: str, kind: str) -> None:
    run, bundle = tmp_path / "run", tmp_path / "bundle"
    assert main(["train", "--config", config, "--out", str(run), *TINY]) == 0
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["split"]) for r in lines] == [(15, "train"), (15, "valid"), (30, "train"), (30, "valid")]
    assert {"objective", "recon", "label_ll"} <= set(lines[0]) and lines[1]["nll"] > 0
    assert main(["eval", "--run", str(run)]) == 0
    ev = json.loads((run / "eval-test.json").read_text())
    cfg = load_config(config)
    assert ev["threshold"] in cfg.train.threshold_grid and 0 < ev["micro_f1"] <= 1 and ev["nll"] > 0
    assert main(["export", "--run", str(run), "--out", str(bundle)]) == 0
    m = load_manifest(bundle)
    assert m.kind == "sdlgm-dis" and m.graphs.decoder is None and m.labels is not None and len(m.labels) == 6
    assert m.thresholds == [ev["threshold"]] * 6 and m.version == cfg.version
    assert m.training["model"]["kind"] == kind and m.training["config"]["model"]["kind"] == kind  # type: ignore[index]
    # the bundle's own F1 (onnxruntime, as /predict answers) is torch's up to float noise at the threshold
    assert float(str(m.evaluation["micro_f1"])) == pytest.approx(ev["micro_f1"], abs=0.005)


def test_count_trains_from_its_config_as_table3_trains_it(tmp_path: Path) -> None:
    run = tmp_path / "run"
    sets = ["data.n_train=200", "data.n_test=100", "train.iterations=6", "train.lr_drop.at=4", "train.eval_every=3"]
    assert main(["train", "--config", "configs/digits-count.yaml", "--out", str(run), "--no-progress",
                 *(a for s in sets for a in ("--set", s))]) == 0
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["split"]) for r in lines] == [(3, "train"), (6, "train")]  # composites: no valid split
    assert main(["eval", "--run", str(run)]) == 0
    ev = json.loads((run / "eval-test.json").read_text())
    assert ev["rows"] == 100 and 0 <= ev["mse"] < 5 and 0 <= ev["exact_count_vector_accuracy"] <= 1
    with pytest.raises(SystemExit, match="model kind count is a baseline and has no deployable bundle"):
        main(["export", "--run", str(run), "--out", str(tmp_path / "bundle")])
    # 6 steps of 100 of 200 composites are 3 epochs, the rate divided by 3 from epoch 2: Table III's recipe
    images, labels = datasets.load_mnist_test(datasets.data_dir())
    composites, test = counting.split_composites(images, labels, 200, 100, seed=0)
    table3 = counting.train_counter(composites, epochs=3, seed=0)
    _, model, _, _ = load_checkpoint(run / "checkpoint.pt")
    for (k, a), b in zip(table3.state_dict().items(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    pred = counting.predict(table3, counting.as_input(test.images)).numpy()
    assert ev["mse"] == pytest.approx(counting.mse(pred, test.counts), rel=1e-12)


@pytest.mark.parametrize("raw, message", [
    ({"name": "x", "data": {"kind": "mnist"}, "model": {"L0": 0}}, "greater than 0"),
    ({"name": "x", "data": {"kind": "mnist"}, "model": {"kind": "sdlgm-dis"}}, "needs multi-label data"),
    ({"name": "x", "data": {"kind": "mnist"}, "train": {"estimator": "magic"}}, "relaxed"),
    ({"name": "Bad Name", "data": {"kind": "mnist"}}, "pattern"),
    ({"name": "x", "data": {"kind": "mnist"}, "surprise": 1}, "Extra inputs"),
])
def test_config_errors_name_the_bad_key(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RunConfig.model_validate(raw)


def test_set_requires_key_value() -> None:
    with pytest.raises(SystemExit, match="key=value"):
        main(["train", "--config", "configs/kpi5g-shared.yaml", "--set", "oops"])
