"""The bundle contract: one pydantic model for the manifest that training writes and the service loads.

A bundle is a directory holding `manifest.json` and the ONNX graphs it names. This module imports no
torch, so both halves of the product share it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from bundle.formats import FORMATS, CodeSpace, EntropyModel, Format

SCHEMA_VERSION: Literal[1] = 1
MANIFEST_FILE = "manifest.json"
GRAPH_ROLES = ("encoder", "sparsity", "decoder")
NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"  # a model's name: the bundle's directory, `?model=NAME`


class BundleError(ValueError):
    """A bundle that fails verification; the service refuses it whole."""


class Graph(BaseModel):
    """One ONNX file of the bundle with its checksum and tensor names."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str = Field(pattern=r"^[A-Za-z0-9_.-]+\.onnx$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    input: str
    outputs: list[str]


class Graphs(BaseModel):
    """encoder: raw x (B, D) -> pi_logits (B, K) (or (B, L0, K) per slot; (B, L0, symbols per slot) when
    the slots gate themselves); sparsity: raw x -> lambda_logits (B, 2), the shared gate only; decoder:
    counts z (B, K) -> x_hat (B, D) in original units. A supervised discriminative bundle has no decoder."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    encoder: Graph
    sparsity: Graph | None = None
    decoder: Graph | None = None

    def present(self) -> dict[str, Graph]:
        return {role: g for role in GRAPH_ROLES if (g := getattr(self, role)) is not None}


class Standardization(BaseModel):
    """Per-feature mean and std fitted on the training part; baked into the graphs, recorded here."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mean: list[float]
    std: list[float]


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION
    name: str = Field(pattern=NAME_PATTERN)
    version: str = Field(min_length=1, max_length=64)
    fingerprint: str = Field(pattern=r"^[0-9a-f]{64}$")
    kind: Literal["sdlgm", "sdlgm-dis"] = "sdlgm"
    D: int = Field(gt=0)
    K: int = Field(gt=1, le=65536)
    L0: int = Field(gt=0, le=255)
    lambda0: float = Field(gt=0.0, le=1.0, description="the prior's P(slot on); 1 exactly when the gate is on")
    per_slot: bool = False
    partitions: int = Field(1, ge=1, description="1: the L0 slots share the K categories (the paper's code); "
                            "L0: slot m owns block m of K / L0 categories (a partitioned code)")
    gate: Literal["shared", "slot", "on"] = Field(
        "shared", description="shared: the sparsity graph's lambda gates all slots (the paper's L_hat); slot: "
        "each slot's own categorical over its block and 'off' (the encoder's last symbol); on: every slot "
        "always holds one category of its block (no 'off', no sparsity graph). slot and on are partitioned")
    likelihood: Literal["bernoulli", "gaussian", "labels"]
    feature_names: list[str]
    standardization: Standardization | None = None
    decoder_scale: list[float] | None = None
    labels: list[str] | None = None
    thresholds: list[float] | None = None
    code_format_version: Literal[1] = 1
    entropy_model: list[list[float]] | None = Field(
        None, description="(L0, symbols per slot) probabilities of each slot's symbol, the static model of the "
        "range format (bundle.formats); covered by the fingerprint")
    graphs: Graphs
    evaluation: dict[str, object] = Field(default_factory=dict)
    training: dict[str, object] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        if len(self.feature_names) != self.D:
            raise ValueError(f"feature_names has {len(self.feature_names)} entries, D is {self.D}")
        if self.standardization is not None:
            s = self.standardization
            if len(s.mean) != self.D or len(s.std) != self.D:
                raise ValueError("standardization mean/std must each have D entries")
            if any(v <= 0 for v in s.std):
                raise ValueError("standardization std must be positive")
        if self.decoder_scale is not None and len(self.decoder_scale) != self.D:
            raise ValueError("decoder_scale must have D entries")
        if self.kind == "sdlgm-dis":
            if self.labels is None or len(self.labels) != self.K:
                raise ValueError("a supervised bundle needs K label names")
            if self.thresholds is None or len(self.thresholds) != self.K:
                raise ValueError("a supervised bundle needs K thresholds")
            if self.graphs.decoder is not None:
                raise ValueError("a discriminative bundle has no decoder")
        else:
            if self.labels is not None or self.thresholds is not None:
                raise ValueError("labels and thresholds belong to supervised bundles only")
            if self.graphs.decoder is None:
                raise ValueError("an unsupervised bundle needs a decoder graph")
        if (self.gate == "shared") != (self.graphs.sparsity is not None):
            raise ValueError("a bundle has a sparsity graph exactly when its gate is shared")
        if (self.gate == "on") != (self.lambda0 == 1.0):
            raise ValueError("lambda0 is 1 exactly when every slot is always on (gate on)")
        if self.gate != "shared" and self.kind == "sdlgm-dis":
            raise ValueError("a supervised bundle's code is its label set: its gate is shared")
        if self.gate != "shared" and (self.partitions != self.L0 or self.per_slot):
            raise ValueError(f"gate {self.gate} is a partitioned code: partitions must be L0, per_slot false")
        space = self.code_space  # raises for partitions that do not fit K and L0
        if self.entropy_model is not None:
            rows = self.entropy_model
            if len(rows) != self.L0 or any(len(r) != space.alphabet for r in rows):
                raise ValueError(f"entropy_model must be {self.L0} rows of {space.alphabet} probabilities")
            if any(p <= 0 for r in rows for p in r) or any(abs(sum(r) - 1) > 1e-6 for r in rows):
                raise ValueError("entropy_model rows must be positive probabilities summing to 1")
        if self.fingerprint != fingerprint_of(self.graphs, self.entropy_model):
            raise ValueError("fingerprint does not match the graphs' checksums")
        return self

    @property
    def supervised(self) -> bool:
        return self.labels is not None

    @property
    def code_space(self) -> CodeSpace:
        return CodeSpace(self.K, self.L0, self.partitions, always_on=self.gate == "on")

    @property
    def entropy(self) -> EntropyModel | None:
        return None if self.entropy_model is None else EntropyModel(np.asarray(self.entropy_model, np.float64))

    @property
    def formats(self) -> tuple[Format, ...]:
        """The code formats this bundle serves (bundle.formats)."""
        return FORMATS if self.entropy_model is not None else tuple(f for f in FORMATS if f != "range")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fingerprint_of(graphs: Graphs, entropy_model: list[list[float]] | None = None) -> str:
    """SHA-256 over the roles and checksums of the graphs, in a fixed order, and the range format's model
    when there is one (a range-coded code reads only under the model that wrote it)."""
    h = hashlib.sha256()
    for role, g in graphs.present().items():
        h.update(f"{role}:{g.sha256}\n".encode())
    if entropy_model is not None:
        h.update(f"entropy_model:{json.dumps(entropy_model)}\n".encode())
    return h.hexdigest()


def inside(path: Path, root: Path | None) -> Path:
    """The path, refused (BundleError) when it or a symlink on its way leads out of the directory root (the
    models directory); root None checks nothing."""
    if root is None:
        return path
    try:
        real, top = path.resolve(strict=True), root.resolve(strict=True)
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python < 3.13)
        raise BundleError(f"{path} cannot be resolved: {exc}") from exc
    if not real.is_relative_to(top) or real == top:
        raise BundleError(f"{path} leads to {real}, out of the models directory {top} (symlinks out are refused)")
    return real


def load_manifest(bundle_dir: Path, root: Path | None = None) -> Manifest:
    """Read and validate a bundle's manifest and check every graph file against its checksum; with root,
    refuse a bundle directory, manifest or graph that leads out of root (service: the models directory)."""
    path = bundle_dir / MANIFEST_FILE
    if not path.is_file():
        raise BundleError(f"{bundle_dir}: no {MANIFEST_FILE}")
    try:
        raw = json.loads(inside(path, root).read_text())
        manifest = Manifest.model_validate(raw)
    except (ValueError, TypeError, RecursionError) as exc:  # RecursionError: JSON nested too deeply
        raise BundleError(f"{path}: invalid manifest: {exc}") from exc
    for role, g in manifest.graphs.present().items():
        gpath = bundle_dir / g.file
        if not gpath.is_file():
            raise BundleError(f"{bundle_dir}: {role} graph {g.file} is missing")
        actual = sha256_file(inside(gpath, root))
        if actual != g.sha256:
            raise BundleError(
                f"{bundle_dir}: {role} graph {g.file} has SHA-256 {actual}, manifest says {g.sha256}"
            )
    return manifest


def write_manifest(bundle_dir: Path, manifest: Manifest) -> Path:
    path = bundle_dir / MANIFEST_FILE
    path.write_text(json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n")
    return path
