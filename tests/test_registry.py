"""The registry of model families: every registered kind builds from its options, trains two steps through
the one loop, round-trips its checkpoint and gives the same code afterwards; a kind name it does not know
is refused with the list of those it knows; each kind's options are its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import ValidationError

from model import registry
from model.count import SIDE
from model.family import Batch, DataShape, Family, Generative, SparseModel, Supervised
from training.config import RunConfig, saved_config
from training.loop import Loop, LoopConfig, read_checkpoint, save_checkpoint

D, K = 12, 5

# The smallest options of each kind, and the data shape it trains on. Every registered kind must appear.
TINY: dict[str, tuple[dict[str, Any], DataShape]] = {
    "sdlgm": ({"K": 8, "L0": 3, "encoder": [8], "sparsity": [4], "decoder": [8]}, DataShape(D)),
    "gsvae": ({"n_vars": 3, "n_classes": 4, "encoder": [8], "decoder": [8]}, DataShape(D, "gaussian")),
    "sdlgm-dis": ({"L0": 3, "encoder": [8], "sparsity": [4]}, DataShape(D, K=K)),
    "sdlgm-gen": ({"L0": 3, "encoder": [8], "sparsity": [4], "decoder": [8]}, DataShape(D, K=K)),
    "sdlgm-con": ({"L0": 3, "Kz": 4, "L0z": 2, "encoder": [8], "decoder": [8]}, DataShape(D, K=K)),
    "count": ({"width": 4, "hidden": 8}, DataShape(SIDE * SIDE * 2, K=10)),
    "sdlgm-search": ({"M": 2, "C": 4, "decoder": [8], "beam": 4, "train_beam": 4, "init_rows": 0},
                     DataShape(D, "gaussian")),
}


def _data(family: Family[Any], shape: DataShape, n: int = 16) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Rows the kind trains on: x, and label sets (2 labels each) or counts (one digit per column)."""
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(n, shape.D, generator=g) < 0.5).float()
    if family.targets == "labels":
        two = torch.rand(n, shape.classes(family.kind), generator=g).argsort(1)[:, :2]
        return x, torch.zeros(n, shape.classes(family.kind)).scatter_(1, two, 1.0)
    if family.targets == "counts":
        columns = shape.D // (SIDE * SIDE)
        digits = torch.randint(0, shape.classes(family.kind), (n, columns), generator=g)
        return x, torch.nn.functional.one_hot(digits, shape.classes(family.kind)).sum(1).float()
    return x, None


def test_every_registered_kind_has_a_tiny_case() -> None:
    assert set(TINY) == set(registry.kinds())


@pytest.mark.parametrize("kind", list(TINY))
def test_each_family_keeps_the_contract_its_targets_and_graphs_need(kind: str) -> None:
    """Evaluation reads a generative model of unlabelled data and a supervised one of label sets; export
    runs the graphs of the family's roles on what the model deploys."""
    family = registry.family(kind)
    needed = {"none": Generative, "labels": Supervised, "counts": SparseModel}[family.targets]
    assert issubclass(family.model, needed) and family.kind == kind
    options, shape = TINY[kind]
    coder = family.build(shape, **options).deployed()
    assert (coder is None) == (not family.graphs)
    if "decoder" in family.graphs:
        assert callable(getattr(coder, "reconstruct", None)) and callable(getattr(coder, "decoder_scale", None))


@pytest.mark.parametrize("kind", list(TINY))
def test_kind_builds_trains_through_the_loop_and_round_trips_its_checkpoint(kind: str, tmp_path: Path) -> None:
    family = registry.family(kind)
    options, shape = TINY[kind]
    torch.manual_seed(0)
    model = family.build(shape, **options)
    assert registry.family_of(model) is family and family.of(model) is model
    x, y = _data(family, shape)
    before = [p.detach().clone() for p in model.parameters()]
    loop = Loop(LoopConfig(steps=2, batch_size=8), model.parameters(), len(x),
                lambda idx, _: model.loss(Batch(x[idx], None if y is None else y[idx])), [model])
    terms = [loop.one_step() for _ in range(2)]
    assert loop.step == 2 and all(torch.isfinite(t["loss"]) and t["loss"].dim() == 0 for t in terms)
    assert all(v.shape in ((), (8,)) for t in terms for v in t.values())  # scalars or per-row terms
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))

    save_checkpoint(tmp_path / "ck.pt", loop, {"model": model},
                    {"model_kind": kind, "model_config": family.saved_config(model)})
    ck = read_checkpoint(tmp_path / "ck.pt")
    again = registry.family(ck["model_kind"]).rebuild(ck["model_config"])
    again.load_state_dict(ck["modules"]["model"])
    assert again.cfg == model.cfg and type(again) is type(model)
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    model.eval()
    L_a, counts_a = model.encode(x)
    L_b, counts_b = again.eval().encode(x)
    assert torch.equal(L_a, L_b) and torch.equal(counts_a, counts_b) and counts_a.shape[0] == len(x)


def test_an_unknown_kind_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown model kind 'vae'; known kinds: sdlgm, gsvae, sdlgm-dis, "
                                         "sdlgm-gen, sdlgm-con, count"):
        registry.family("vae")
    with pytest.raises(ValidationError, match="known kinds: sdlgm, gsvae"):
        RunConfig.model_validate({"name": "x", "data": {"kind": "mnist"}, "model": {"kind": "vae"}})


def test_a_model_of_another_family_is_refused() -> None:
    model = registry.family("sdlgm-dis").build(DataShape(D, K=K), L0=2)
    with pytest.raises(TypeError, match="expected a sdlgm model, got SDLGMDis"):
        registry.family("sdlgm").of(model)

    class Stray(SparseModel):
        def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
            return {"loss": batch.x.sum()}

        def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x, x

    with pytest.raises(ValueError, match="Stray is not the model of a registered kind"):
        registry.family_of(Stray())


@pytest.mark.parametrize("model, message", [
    ({"kind": "gsvae", "K": 64}, "Extra inputs"),  # K is an SDLGM option, not a GS-VAE one
    ({"kind": "sdlgm", "n_vars": 20}, "Extra inputs"),
    ({"kind": "sdlgm-dis", "encoder": [8]}, "L0\n  Field required"),
    ({"kind": "sdlgm", "encoder": [0]}, "greater than 0"),
])
def test_each_kind_takes_only_its_own_options(model: dict[str, Any], message: str) -> None:
    data = {"kind": "mulan", "mulan_set": "emotions"} if model["kind"] == "sdlgm-dis" else {"kind": "mnist"}
    with pytest.raises(ValidationError, match=message):
        RunConfig.model_validate({"name": "x", "data": data, "model": model})


@pytest.mark.parametrize("model, data, message", [
    ({"kind": "sdlgm-gen", "L0": 3}, {"kind": "kpi5g"}, "needs multi-label data"),
    ({"kind": "count"}, {"kind": "mulan", "mulan_set": "emotions"}, "needs count data .data.kind: composites"),
    ({"kind": "gsvae"}, {"kind": "composites"}, "needs unlabelled data .data.kind: mnist or kpi5g"),
])
def test_a_kind_trains_only_on_data_with_its_targets(model: dict[str, Any], data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RunConfig.model_validate({"name": "x", "data": data, "model": model})


def test_a_config_saved_in_the_flat_form_loads_and_a_stray_setting_does_not() -> None:
    flat = {"name": "x", "data": {"kind": "kpi5g", "dir": None, "kpis": None, "window": 10, "stride": 2,
                                  "mulan_set": None, "mulan_arff": None, "mulan_xml": None, "valid_size": 10000},
            "model": {"kind": "sdlgm", "K": 64, "L0": 4, "lambda0": 0.5, "encoder": [256, 128], "sparsity": [64],
                      "decoder": [128, 256], "per_slot": False, "n_vars": 20, "n_classes": 10}}
    cfg = saved_config(flat)
    assert cfg.model.model_dump() == {"kind": "sdlgm", "K": 64, "L0": 4, "lambda0": 0.5, "encoder": (256, 128),
                                      "sparsity": (64,), "decoder": (128, 256), "per_slot": False,
                                      "gate": "shared", "learned_prior": False, "gated_kl": False,
                                      "scale": "feature", "sigma": 1.0, "usage_weight": 0.0}
    assert cfg.data.model_dump() == {"kind": "kpi5g", "dir": None, "kpis": None, "window": 10, "stride": 2}
    with pytest.raises(ValidationError, match="n_vars"):  # a GS-VAE setting that is not the old default
        saved_config({**flat, "model": {**flat["model"], "n_vars": 7}})
    assert saved_config(cfg.model_dump(mode="json")) == cfg  # a config saved now loads as it is
