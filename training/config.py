"""Run configuration: one pydantic model per concern, loaded from YAML, saved inside every checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(Strict):
    kind: Literal["mnist", "kpi5g", "mulan"]
    dir: str | None = None  # default: $SDLGM_DATA_DIR or ../shared/data
    kpis: list[str] | None = None  # kpi5g: default training.datasets.DEFAULT_KPIS
    window: int = Field(10, gt=0)  # kpi5g: seconds per vector
    stride: int | None = None
    mulan_set: str | None = None  # mulan: emotions, birds, cal500
    mulan_arff: str | None = None  # mulan: a user's own train ARFF (with mulan_xml), instead of mulan_set
    mulan_xml: str | None = None
    valid_size: int = Field(10_000, ge=0)  # mnist: rows of the valid file used for validation


class ModelConfig(Strict):
    kind: Literal["sdlgm", "gsvae", "sdlgm-dis"] = "sdlgm"
    K: int = Field(200, gt=1)
    L0: int = Field(40, gt=0, le=255)
    lambda0: float = Field(0.5, gt=0, lt=1)
    encoder: list[int] = [512, 384, 256]
    sparsity: list[int] = [256, 64]
    decoder: list[int] = [256, 384, 512]
    per_slot: bool = False
    n_vars: int = 20  # gsvae
    n_classes: int = 10  # gsvae


class Temperature(Strict):
    """fixed: tau0 throughout; anneal: max(tau_min, tau0 * exp(-rate * t)); learned: a parameter from tau0."""

    kind: Literal["fixed", "anneal", "learned"] = "fixed"
    tau0: float = Field(1.0, gt=0)
    tau_min: float = Field(0.5, gt=0)
    rate: float = Field(1e-4, ge=0)


class TrainConfig(Strict):
    iterations: int = Field(10_000, gt=0)
    batch_size: int = Field(100, gt=0)
    lr: float = Field(1e-3, gt=0)
    lr_final: float | None = None  # cosine decay to this value when set
    seed: int = 0
    estimator: Literal["relaxed", "st"] = "st"
    tau: Temperature = Temperature()
    tau_z: Temperature = Temperature()
    eval_every: int = Field(1000, gt=0)
    checkpoint_every: int = Field(1000, gt=0)
    threshold_grid: list[float] = [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5]  # sdlgm-dis


class EvalConfig(Strict):
    is_samples: int = Field(100, gt=0)  # importance samples per observation for log p(x)
    is_limit: int | None = 2000  # test rows used for the IS estimate (None: all)


class RunConfig(Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    version: str = "0.1.0"
    data: DataConfig
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        if self.model.kind == "sdlgm-dis" and self.data.kind != "mulan":
            raise ValueError("model.kind sdlgm-dis needs multi-label data (data.kind: mulan)")
        if self.data.kind == "mulan" and self.model.kind != "sdlgm-dis":
            raise ValueError("data.kind mulan is for model.kind sdlgm-dis")
        return self


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
