"""The contract every model family keeps, and the record that registers a family (`model.registry`).

A family is one model kind: its name (`kind`, what `model.kind` says in a run config), its config (a frozen
dataclass saved inside every checkpoint, so the file alone rebuilds the model), its options (the run
config's `model:` section for this kind, a pydantic model that turns into the config given the data's
shape), what its data must provide (`targets`), and the graphs its bundle exports.

Every model is a `SparseModel`:
  loss(batch)  -> dict of named terms: "loss" (the scalar to minimise) and per-row (B,) or scalar terms
  encode(x)    -> the deterministic code (L_hat (B,), counts (B, K)) of standardized inputs
Generative models (targets "none") add the ELBO terms, the decoder and importance samples; supervised
ones (targets "labels") the label probabilities and log q(y | x).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any, Generic, Literal, Protocol, TypeVar, cast

import torch
from pydantic import BaseModel, ConfigDict, PositiveInt
from torch import nn

from model.relax import Mode

Targets = Literal["none", "labels", "counts"]  # what a row carries beside x: nothing, a label set, counts
Role = Literal["encoder", "sparsity", "decoder"]
Widths = tuple[PositiveInt, ...]  # hidden layer sizes in Options


@dataclass(frozen=True)
class Batch:
    """What one training step feeds a model: standardized inputs, their targets, and how to sample."""

    x: torch.Tensor  # (B, D)
    y: torch.Tensor | None = None  # (B, K) label sets (0/1) or counts; None for unlabelled data
    tau: torch.Tensor | float = 1.0  # gate temperature
    tau_z: torch.Tensor | float = 1.0  # slot temperature
    mode: Mode = "st"  # relaxed, straight-through (st, gr) or hard samples
    beta: float = 1.0  # weight of the KL in the loss (a KL warm-up below 1); figures are always at 1

    def targets(self, kind: str) -> torch.Tensor:
        if self.y is None:
            raise ValueError(f"model kind {kind} trains on targets y, and this batch has none")
        return self.y


@dataclass(frozen=True)
class DataShape:
    """What a family's options need from the data: the width D, the likelihood of unlabelled data, the
    number K of labels or count classes."""

    D: int
    likelihood: Literal["bernoulli", "gaussian"] = "bernoulli"
    K: int | None = None

    def classes(self, kind: str) -> int:
        if self.K is None:
            raise ValueError(f"model kind {kind} needs labelled data (its K is the number of labels)")
        return self.K


class Options(BaseModel):
    """A family's section of the run config; `config(shape)` makes the model config."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str

    @abstractmethod
    def config(self, shape: DataShape) -> Any: ...


class SparseCoder(Protocol):
    """What a bundle's encoder and sparsity graphs run: the code's logits of standardized inputs and the
    standardization baked into the graphs."""

    x_mean: torch.Tensor
    x_std: torch.Tensor

    def pi_logits(self, x: torch.Tensor) -> torch.Tensor: ...

    def lambda_logits(self, x: torch.Tensor) -> torch.Tensor: ...


class SparseModel(nn.Module, ABC):
    """The contract of every family's model (see the module docstring)."""

    cfg: Any  # the family's frozen config dataclass

    @abstractmethod
    def loss(self, batch: Batch) -> dict[str, torch.Tensor]: ...

    @abstractmethod
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def initialise(self, x: torch.Tensor) -> None:
        """Data-dependent initialisation from the standardized training rows, before the first step of a
        fresh run (default: none)."""

    def deployed(self) -> SparseCoder | None:
        """The module the exported graphs run; None for a baseline that exports no bundle."""
        return None

    def set_standardization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Keep the training part's statistics with the model that exports them (baked into the graphs)."""
        coder = self.deployed()
        if coder is not None:
            coder.x_mean.copy_(mean)
            coder.x_std.copy_(std)


class Generative(SparseModel):
    """A model of x (targets "none"): ELBO terms, a decoder and importance samples from q."""

    @abstractmethod
    def forward(self, x: torch.Tensor, tau: torch.Tensor | float = 1.0, tau_z: torch.Tensor | float = 1.0,
                mode: Mode = "st") -> dict[str, torch.Tensor]:
        """elbo, recon, kl_gate, kl_code per row (B,) and the sampled code z (B, K') for one sample."""

    @abstractmethod
    def decode_out(self, z: torch.Tensor) -> torch.Tensor:
        """Decoder output for codes (B, K'): Bernoulli logits or the standardized Gaussian mean."""

    @abstractmethod
    def recon_log_likelihood(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """log p(x | decoder output), summed over features; (B,)."""

    @abstractmethod
    def importance_samples(self, x: torch.Tensor, samples: int) -> tuple[torch.Tensor, torch.Tensor]:
        """S hard codes from q (S, B, K') and their log p(z) - log q(z | x) (S, B)."""


class Supervised(SparseModel):
    """A model whose code is the label set (targets "labels")."""

    @abstractmethod
    def label_log_likelihood(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """log q(y | x) of label sets y (B, K) with |y| <= L0; (B,)."""

    @abstractmethod
    def label_probability(self, x: torch.Tensor) -> torch.Tensor:
        """P(k in code) = 1 - (1 - lambda pi_k)^L0; (B, K)."""


M = TypeVar("M", bound=SparseModel)


@dataclass(frozen=True)
class Family(Generic[M]):
    """One registered model kind (see the module docstring)."""

    kind: str
    model: type[M]  # the model class, built from its config
    config: type  # the frozen config dataclass
    options: type[Options]
    targets: Targets
    graphs: tuple[Role, ...]  # what its bundle exports; () for a baseline without a bundle

    @property
    def bundle_kind(self) -> Literal["sdlgm", "sdlgm-dis"]:
        """The manifest's kind: a supervised bundle (the code is the label set) or a generative one."""
        return "sdlgm-dis" if self.targets == "labels" else "sdlgm"

    def build(self, shape: DataShape, **options: Any) -> M:
        """A fresh model from options (validated by the family's Options) for data of this shape."""
        return self.model(self.options.model_validate({"kind": self.kind, **options}).config(shape))

    def rebuild(self, config: dict[str, Any]) -> M:
        """A fresh model from a config saved as a dict (lists become the dataclass's tuples)."""
        return self.model(self.config(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}))

    def saved_config(self, model: SparseModel) -> dict[str, Any]:
        """The model's config as JSON values (tuples as lists), what `rebuild` takes."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self.of(model).cfg).items()}

    def of(self, model: SparseModel) -> M:
        """The model, typed as this family's class; a TypeError if it is of another family."""
        if type(model) is not self.model:
            raise TypeError(f"expected a {self.kind} model, got {type(model).__name__}")
        return cast(M, model)
