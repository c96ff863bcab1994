"""Run configuration: one pydantic model per concern, loaded from YAML, saved inside every checkpoint.

`data:` and `model:` are each chosen by their `kind`: the data kinds below, and the model kinds of the
registry (`model.registry`), each with its own options (`model.<family>.Options`); a model kind trains
on the data kinds that carry what it needs (nothing beside x, label sets, or counts).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, field_validator, model_validator

from bundle.manifest import NAME_PATTERN
from model import registry
from model.family import Options, Targets


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Data(Strict):
    targets: ClassVar[Targets] = "none"  # what each row carries beside x
    dir: str | None = None  # default: $SDLGM_DATA_DIR or ../shared/data


class MnistData(_Data):
    """Binarized MNIST (Larochelle & Murray's split)."""

    kind: Literal["mnist"]
    valid_size: int = Field(10_000, ge=0)  # rows of the valid file used for validation


class KpiData(_Data):
    """Windows of consecutive seconds of 5G KPIs (training.datasets.load_kpi_split)."""

    kind: Literal["kpi5g"]
    kpis: list[str] | None = None  # default training.datasets.DEFAULT_KPIS
    window: int = Field(10, gt=0)  # seconds per vector
    stride: int | None = None


class MulanData(_Data):
    """A Mulan multi-label set: a named one, or a user's own train ARFF with its XML."""

    targets: ClassVar[Targets] = "labels"
    kind: Literal["mulan"]
    mulan_set: str | None = None  # emotions, birds, cal500
    mulan_arff: str | None = None
    mulan_xml: str | None = None


class CompositesData(_Data):
    """Table III's composites of MNIST test digit columns, their counts as targets (training.counting)."""

    targets: ClassVar[Targets] = "counts"
    kind: Literal["composites"]
    n_train: int = Field(5000, gt=0)
    n_test: int = Field(1000, gt=0)
    p_blank: float = Field(0.5, ge=0, lt=1)


DATA_KINDS: dict[str, type[_Data]] = {"mnist": MnistData, "kpi5g": KpiData, "mulan": MulanData,
                                      "composites": CompositesData}
DataConfig = Annotated[MnistData | KpiData | MulanData | CompositesData, Field(discriminator="kind")]
_NEEDS = {"none": "unlabelled data", "labels": "multi-label data", "counts": "count data"}


class Temperature(Strict):
    """fixed: tau0 throughout; anneal: max(tau_min, tau0 * exp(-rate * t)); learned: a parameter from tau0."""

    kind: Literal["fixed", "anneal", "learned"] = "fixed"
    tau0: float = Field(1.0, gt=0)
    tau_min: float = Field(0.5, gt=0)
    rate: float = Field(1e-4, ge=0)


class LrDrop(Strict):
    """The learning rate divided by `divisor` from step `at` on (Table III's recipe: by 3 for the last third)."""

    at: int = Field(gt=0)
    divisor: float = Field(3.0, gt=1)


class TrainConfig(Strict):
    iterations: int = Field(10_000, gt=0)
    batch_size: int = Field(100, gt=0)
    optimizer: Literal["adam", "adamw"] = "adam"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    lr_final: float | None = Field(None, gt=0)  # cosine decay to this value when set
    lr_drop: LrDrop | None = None  # or a step down
    clip_grad_norm: float | None = Field(None, gt=0)
    order: Literal["permutation", "replacement"] = "permutation"  # full batches of a permutation per pass
    seed: int = 0
    estimator: Literal["relaxed", "st", "gr"] = "st"  # gr: straight-through with Gumbel-Rao's backward
    keep_best: bool = False  # end with the state of the least validation discrete -ELBO (evaluated every eval_every)
    kl_warmup: int = Field(0, ge=0)  # the KL's weight rises linearly from 1 / kl_warmup to 1 over these steps
    tau: Temperature = Temperature()
    tau_z: Temperature = Temperature()
    eval_every: int = Field(1000, gt=0)
    checkpoint_every: int = Field(1000, gt=0)
    device: Literal["cpu", "cuda"] = "cpu"  # cuda: one GPU per process (under torchrun: per local rank)
    threshold_grid: list[float] = [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5]  # label kinds

    @model_validator(mode="after")
    def _one_schedule(self) -> TrainConfig:
        if self.lr_final is not None and self.lr_drop is not None:
            raise ValueError("train.lr_final (cosine) and train.lr_drop (a step) are two schedules: set one")
        return self


class EvalConfig(Strict):
    is_samples: int = Field(100, gt=0)  # importance samples per observation for log p(x)
    # rows of the split for the IS estimate: a seeded uniform sample without replacement (None: all), never
    # the head of the file (the binarized MNIST test set is grouped by digit)
    is_rows: int | None = Field(2000, gt=0)
    is_seed: int = 0


# The one `data:` and one `model:` section of configs saved before each kind had its own options: every
# kind's keys in one bag, with these defaults. A saved config of that form (the committed default bundle's
# manifest holds one) loses the keys of other kinds that hold them; any other stray key is an error.
_FLAT_DEFAULTS: dict[str, dict[str, Any]] = {
    "data": {"dir": None, "kpis": None, "window": 10, "stride": None, "mulan_set": None, "mulan_arff": None,
             "mulan_xml": None, "valid_size": 10_000},
    "model": {"K": 200, "L0": 40, "lambda0": 0.5, "encoder": [512, 384, 256], "sparsity": [256, 64],
              "decoder": [256, 384, 512], "per_slot": False, "n_vars": 20, "n_classes": 10},
}


class RunConfig(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    version: str = "0.1.0"
    data: DataConfig
    model: SerializeAsAny[Options] = Field(default_factory=lambda: registry.parse_options({}))
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()

    @model_validator(mode="before")
    @classmethod
    def _kinds_fit(cls, raw: Any) -> Any:
        """A model kind trains on the data kinds that carry its targets; checked before any option."""
        if not isinstance(raw, dict):
            return raw
        data, model = raw.get("data"), raw.get("model", {})
        data_kind = data.get("kind") if isinstance(data, dict) else getattr(data, "kind", None)
        model_kind = model.get("kind", "sdlgm") if isinstance(model, dict) else getattr(model, "kind", None)
        if data_kind in DATA_KINDS and isinstance(model_kind, str):
            needs = registry.family(model_kind).targets
            if DATA_KINDS[data_kind].targets != needs:
                fits = " or ".join(k for k, d in DATA_KINDS.items() if d.targets == needs)
                raise ValueError(f"model.kind {model_kind} needs {_NEEDS[needs]} (data.kind: {fits}), "
                                 f"not data.kind {data_kind}")
        return raw

    @field_validator("model", mode="before")
    @classmethod
    def _model_options(cls, raw: Any) -> Any:
        """A mapping becomes its kind's Options (kind sdlgm when none is given)."""
        return registry.parse_options(raw) if isinstance(raw, dict) else raw


def saved_config(raw: dict[str, Any]) -> RunConfig:
    """A run config saved in a checkpoint or a manifest (see _FLAT_DEFAULTS for those of the flat form)."""
    data, model = raw.get("data", {}), raw.get("model", {})
    if "is_limit" in raw.get("eval", {}):  # configs saved before the IS subset was a random sample
        ev = {k: v for k, v in raw["eval"].items() if k != "is_limit"}
        raw = {**raw, "eval": {**ev, "is_rows": raw["eval"]["is_limit"]}}
    known = {"data": set(DATA_KINDS[data["kind"]].model_fields) if data.get("kind") in DATA_KINDS else set(data),
             "model": set(registry.family(model.get("kind", "sdlgm")).options.model_fields)}
    section = {name: {k: v for k, v in part.items()
                      if k in known[name] or k not in _FLAT_DEFAULTS[name] or v != _FLAT_DEFAULTS[name][k]}
               for name, part in (("data", data), ("model", model))}
    return RunConfig.model_validate({**raw, **section})


def load_config(path: str | Path, overrides: dict[str, object] | None = None) -> RunConfig:
    """Read a YAML config; overrides are dotted keys, e.g. {"train.iterations": 50}."""
    raw = yaml.safe_load(Path(path).read_text())
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a config is a YAML mapping")
    for key, value in (overrides or {}).items():
        node = raw
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return RunConfig.model_validate(raw)
