"""Request and response bodies of every endpoint (pydantic), separate for the two directions.

Requests are strict: numbers must be JSON numbers (no strings, no booleans), finite (Python's json reads
`NaN` and `Infinity`; they are refused here), and unknown fields are errors. The model is not part of a
body: every endpoint takes it as the `?model=` query parameter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic.json_schema import JsonDict

from bundle.formats import Format

F32_MAX = 3.4028234663852886e38  # the largest float32: a larger value is refused (service.inference.as_matrix)
FiniteFloat = Annotated[float, Field(strict=True, allow_inf_nan=False,
                                     json_schema_extra={"minimum": -F32_MAX, "maximum": F32_MAX})]
Vector = list[FiniteFloat]


def integral(value: object) -> object:
    """A JSON number without a fraction as the integer it is (JSON Schema's `integer` takes 1.0 as 1)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


# Integers: no strings, booleans or fractions. The bounds go before the validator, or pydantic writes them
# into the JSON schema as unknown keywords ("ge").
NonNegativeInt = Annotated[int, Field(strict=True, ge=0), BeforeValidator(integral)]
PositiveInt = Annotated[int, Field(strict=True, ge=1), BeforeValidator(integral)]
Seed = Annotated[int, Field(strict=True, ge=0, lt=2**63), BeforeValidator(integral)]
FINGERPRINT = r"^[0-9a-f]{64}$"
BASE64 = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"  # what b64decode(validate=True) reads


def schema_extra(**extra: object) -> Callable[[JsonDict], None]:
    """json_schema_extra of an optional field whose null is refused (`_given`): its schema without the null
    branch and without `default: null`, and these keywords."""
    def update(schema: JsonDict) -> None:
        schema.pop("default", None)
        branches = schema.pop("anyOf", [])
        if isinstance(branches, list):
            schema.update(next(b for b in branches if isinstance(b, dict) and b.get("type") != "null"))
        schema.update(extra)  # type: ignore[arg-type]  # JSON values
    return update


NONEMPTY = schema_extra(minItems=1)  # in the schema only: an empty one is refused by the route with its own message


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _given(request: BaseModel, *names: str) -> list[str]:
    """Which of these fields the request sets; an explicit null is refused (the schema has no null for them)."""
    given = [n for n in names if n in request.model_fields_set]
    for name in given:
        if getattr(request, name) is None:
            raise ValueError(f"'{name}' is null; leave it out instead")
    return given


class VectorsRequest(_Request):
    """One vector (`vector`) or a batch (`vectors`), raw values in the units of the manifest's features."""

    model_config = ConfigDict(json_schema_extra={"oneOf": [{"required": ["vector"]}, {"required": ["vectors"]}]})

    vector: Vector | None = Field(None, description="one vector of D values",
                                                  json_schema_extra=NONEMPTY)
    vectors: list[Vector] | None = Field(None, description="a batch of vectors of D values each "
                                                         "(at most SDLGM_MAX_BATCH)", json_schema_extra=NONEMPTY)

    @model_validator(mode="after")
    def _one_form(self) -> VectorsRequest:
        if len(_given(self, "vector", "vectors")) != 1:
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
    seed: Seed | None = Field(None,
                             description="seed of a stochastic code (same seed, same codes)")


class PredictRequest(VectorsRequest):
    pass


SPARSE_OR_BINARY: JsonDict = {"oneOf": [  # a `false` property schema: that property must be absent
    {"required": ["indices", "counts"], "properties": {"binary": False}},
    {"required": ["binary"], "properties": {"indices": False, "counts": False}}]}


class CodeIn(_Request):
    """A code as `indices` + `counts`, or as `binary` (base64 of the binary format, bundle.codes)."""

    model_config = ConfigDict(json_schema_extra=SPARSE_OR_BINARY)

    indices: list[NonNegativeInt] | None = Field(
        None, description="the code's non-zero entries, each in [0, K)", json_schema_extra=schema_extra(uniqueItems=True))
    counts: list[PositiveInt] | None = Field(
        None, description="their counts, each at least 1, summing to at most L0", json_schema_extra=schema_extra())
    binary: str | None = Field(None, max_length=1024, description="base64 of a binary code",
                                               json_schema_extra=schema_extra(pattern=BASE64))

    @model_validator(mode="after")
    def _one_form(self) -> CodeIn:
        given = _given(self, "indices", "counts", "binary")
        sparse = "indices" in given or "counts" in given
        if sparse == ("binary" in given):
            raise ValueError("give a code as 'indices' and 'counts', or as 'binary', not both")
        if sparse and (self.indices is None or self.counts is None):
            raise ValueError("a sparse code needs both 'indices' and 'counts'")
        return self


class DecodeRequest(_Request):
    fingerprint: str = Field(pattern=FINGERPRINT, description="fingerprint of the model that made the codes")
    format: Format = Field("v1", description="format of the codes given as `binary`; " + FORMAT_DESCRIPTION)
    codes: list[CodeIn] = Field(description="at most SDLGM_MAX_BATCH", json_schema_extra={"minItems": 1})


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
