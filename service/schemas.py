"""Request and response bodies of every endpoint (pydantic), separate for the two directions.

Requests are strict: numbers must be JSON numbers (no strings, no booleans), finite (Python's json reads
`NaN` and `Infinity`; they are refused here), and unknown fields are errors. The model is not part of a
body: every endpoint takes it as the `?model=` query parameter.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from bundle.formats import Format

FiniteFloat = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Vector = list[FiniteFloat]
FINGERPRINT = r"^[0-9a-f]{64}$"


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VectorsRequest(_Request):
    """One vector (`vector`) or a batch (`vectors`), raw values in the units of the manifest's features."""

    vector: Vector | None = Field(None, description="one vector of D values")
    vectors: list[Vector] | None = Field(None, description="a batch of vectors of D values each")

    @model_validator(mode="after")
    def _one_form(self) -> VectorsRequest:
        if (self.vector is None) == (self.vectors is None):
            raise ValueError("give exactly one of 'vector' (one vector) or 'vectors' (a batch)")
        return self

    def rows(self) -> list[list[float]]:
        return [self.vector] if self.vector is not None else self.vectors or []


FORMAT_DESCRIPTION = ("binary code format (bundle.formats): v1 (version byte, n, indices, counts), enum (the "
                      "code's fixed-length index in its code space), range (range-coded under the bundle's "
                      "entropy model; bundles list theirs in /v1/models)")


class EncodeRequest(VectorsRequest):
    format: Format = Field("v1", description=FORMAT_DESCRIPTION)
    stochastic: bool = Field(False, strict=True, description="sample the code from q instead of its mode")
    seed: int | None = Field(None, ge=0, lt=2**63, strict=True,
                             description="seed of a stochastic code (same seed, same codes)")


class PredictRequest(VectorsRequest):
    pass


class CodeIn(_Request):
    """A code as `indices` + `counts`, or as `binary` (base64 of the binary format, bundle.codes)."""

    indices: list[StrictInt] | None = None
    counts: list[StrictInt] | None = None
    binary: str | None = Field(None, max_length=1024, description="base64 of a binary code")

    @model_validator(mode="after")
    def _one_form(self) -> CodeIn:
        sparse = self.indices is not None or self.counts is not None
        if sparse == (self.binary is not None):
            raise ValueError("give a code as 'indices' and 'counts', or as 'binary', not both")
        if sparse and (self.indices is None or self.counts is None):
            raise ValueError("a sparse code needs both 'indices' and 'counts'")
        return self


class DecodeRequest(_Request):
    fingerprint: str = Field(pattern=FINGERPRINT, description="fingerprint of the model that made the codes")
    format: Format = Field("v1", description="format of the codes given as `binary`; " + FORMAT_DESCRIPTION)
    codes: list[CodeIn]


class CodeOut(BaseModel):
    indices: list[int] = Field(description="non-zero entries of the code, increasing")
    counts: list[int] = Field(description="their counts (sum = L_hat)")
    L_hat: int = Field(description="active slots, the sum of the counts")
    nnz: int = Field(description="number of non-zero entries")
    binary: str = Field(description="base64 of the code in the response's format")
    size_bytes: int = Field(description="length of the binary code in bytes (v1: 2 + nnz * (index width + 1))")


class EncodeResponse(BaseModel):
    model: str
    fingerprint: str
    stochastic: bool
    codes: list[CodeOut]


class DecodeResponse(BaseModel):
    model: str
    fingerprint: str
    reconstructions: list[list[float]] = Field(description="one vector of D values per code, original units")


class Prediction(BaseModel):
    labels: list[str] = Field(description="labels whose probability reaches the manifest's threshold")
    probabilities: dict[str, float] = Field(description="P(label in code) per label")
    L_hat: int = Field(description="predicted number of labels (mode of the gate)")


class PredictResponse(BaseModel):
    model: str
    fingerprint: str
    labels: list[str]
    predictions: list[Prediction]


class ModelInfo(BaseModel):
    name: str
    default: bool
    version: str
    fingerprint: str
    kind: str
    D: int
    K: int
    L0: int
    per_slot: bool
    partitions: int
    gate: str = Field(description="shared (the paper's lambda), slot (each slot gates itself) or on (no slot off)")
    formats: list[str] = Field(description="the binary code formats this model serves")
    likelihood: str
    provider: str = Field(description="the onnxruntime execution provider really used")
    labels: list[str] | None
    thresholds: list[float] | None
    feature_names: list[str]
    evaluation: dict[str, object]


class RefusedBundle(BaseModel):
    name: str
    error: str = Field(description="why the bundle on disk under this name was refused (at start or by the last "
                       "reload)")
    serving: str | None = Field(description="the fingerprint of the version still served under this name, "
                                "null when none is")


class ModelList(BaseModel):
    default: str
    models: list[ModelInfo]
    refused: list[RefusedBundle] = Field(description="bundles refused at start or by the last reload "
                                         "(docs/reload.md)")


class ReloadReport(BaseModel):
    pid: int = Field(description="the worker that reloaded (each worker reloads its own; SIGHUP reaches all)")
    loaded: dict[str, str] = Field(description="models loaded by this reload (new or replaced), by fingerprint")
    unchanged: list[str] = Field(description="models whose bundle did not change, left as they were")
    refused: dict[str, str] = Field(description="bundles refused, with the cause; a model served before keeps "
                                    "being served")
    error: str | None = Field(description="why the reload did not happen at all (the bundles could not be "
                              "listed); every model kept")


class Health(BaseModel):
    status: str
    pid: int = Field(description="the process that answered (one of the workers with SDLGM_WORKERS > 1)")


class Readiness(BaseModel):
    ready: bool
    models: list[str] = Field(description="models loaded and warmed")
    reasons: list[str] = Field(description="why not ready (empty when ready)")
    refused: dict[str, str] = Field(description="bundles refused at start or by the last reload, with the cause")


class ErrorResponse(BaseModel):
    error: str
    kind: str
    detail: list[dict[str, str]] | None = None
