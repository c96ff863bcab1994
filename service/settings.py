"""The service's settings: one pydantic-settings class read from `SDLGM_*` environment variables.

Every setting has a safe default and unsafe values fail at start with the variable's name, the bad value
and the allowed range (see `describe_error`). The served name of a bundle is its directory name under
`models_dir` (as in Triton's model repository), so `default_model`, `models` and the `?model=` query
parameter all speak of directory names.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bundle import manifest

ENV_PREFIX = "SDLGM_"
NAME_PATTERN = re.compile(manifest.NAME_PATTERN)
MIN_TOKEN, MAX_TOKEN = 16, 256  # SDLGM_RELOAD_TOKEN's length
SECRETS = {"reload_token"}  # settings whose value an error message never shows


def _check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise ValueError(f"{name!r} is not a model name (lower-case letters, digits, '_', '.', '-'; up to 64)")
    return name


class Settings(BaseSettings):
    """Environment variables: SDLGM_MODELS_DIR, SDLGM_DEFAULT_MODEL, SDLGM_MODELS, SDLGM_HOST, SDLGM_PORT,
    SDLGM_WORKERS, SDLGM_PROVIDER, SDLGM_ALLOW_CPU_FALLBACK, SDLGM_INTRA_OP_THREADS, SDLGM_INTER_OP_THREADS,
    SDLGM_MAX_BATCH, SDLGM_MAX_BODY_BYTES, SDLGM_REQUEST_TIMEOUT_S, SDLGM_HEADER_TIMEOUT_S, SDLGM_BODY_TIMEOUT_S,
    SDLGM_MAX_CONNECTIONS, SDLGM_DRAIN_TIMEOUT_S, SDLGM_BATCHING, SDLGM_BATCH_MAX_VECTORS, SDLGM_BATCH_MAX_DELAY_MS,
    SDLGM_QUEUE_MAX_VECTORS, SDLGM_QUALITY_SAMPLE_RATE, SDLGM_RELOAD_TOKEN, SDLGM_LOG_LEVEL. An empty variable
    counts as unset."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_ignore_empty=True, extra="forbid", frozen=True)

    models_dir: Path = Field(default=Path("models"), description="directory holding one bundle per subdirectory")
    default_model: str = Field(default="kpi5g", description="the model used when a request names none")
    models: str | None = Field(
        default=None, description="comma-separated bundle directory names to load; default: every subdirectory "
        "with a manifest.json. A listed bundle that fails to load keeps /readyz at 503.")
    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64, description="worker processes; each loads every model with its "
                         "own onnxruntime threads, batchers and queue cap")
    provider: Literal["cpu", "cuda", "auto"] = Field(
        default="auto", description="onnxruntime execution provider; auto = CUDA when available, else CPU")
    allow_cpu_fallback: bool = Field(default=True, description="serve on CPU when provider=cuda finds no CUDA")
    intra_op_threads: int = Field(default=1, ge=0, le=256, description="onnxruntime intra-op threads (0: its own)")
    inter_op_threads: int = Field(default=1, ge=0, le=256, description="onnxruntime inter-op threads (0: its own)")
    max_batch: int = Field(default=1024, ge=1, le=65536, description="most vectors or codes in one request")
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, le=1024**3, description="largest body (413)")
    request_timeout_s: float = Field(default=10.0, gt=0.0, le=3600.0, description="time limit of a whole request "
                                     "from its head: reading the body, parsing, queueing, inference, answering (503)")
    header_timeout_s: float = Field(default=5.0, gt=0.0, le=600.0, description="time a connection has to send a "
                                    "request's head, from its opening or the previous answer (idle: closed; "
                                    "a partial head: 408)")
    body_timeout_s: float = Field(default=10.0, gt=0.0, le=3600.0, description="time a request has to send its "
                                  "body, from its head (408 and the connection closed)")
    max_connections: int = Field(default=512, ge=1, le=65536, description="open connections per worker; one more "
                                 "is answered 503 and closed")
    drain_timeout_s: float = Field(default=8.0, ge=0.0, le=3600.0, description="after SIGTERM, the most the "
                                   "service waits for accepted requests (then 503) before it exits")
    batching: bool = Field(default=True, description="coalesce concurrent requests to one model and operation "
                           "into one onnxruntime run (false: each request runs alone)")
    batch_max_vectors: int = Field(default=256, ge=1, le=65536, description="most vectors or codes in one "
                                   "coalesced run (a request over it runs alone, never split)")
    batch_max_delay_ms: float = Field(default=0.0, ge=0.0, le=1000.0, description="longest a request waits "
                                      "for others to join its run; 0: none (batches still form while one runs)")
    queue_max_vectors: int = Field(default=4096, ge=1, le=1 << 24, description="vectors or codes each model may "
                                   "have queued or running in a worker (503 with Retry-After above)")
    quality_sample_rate: float = Field(default=0.01, ge=0.0, le=1.0, description="share of /encode requests "
                                       "whose codes are decoded again to measure the round trip's error")
    reload_token: SecretStr | None = Field(default=None, description="the bearer "
                                           "token of POST /v1/reload (docs/reload.md); unset: the endpoint is off "
                                           "and SIGHUP is the way to reload")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"

    @field_validator("default_model")
    @classmethod
    def _default_name(cls, v: str) -> str:
        return _check_name(v)

    @field_validator("models")
    @classmethod
    def _model_list(cls, v: str | None) -> str | None:
        if v is None:
            return None
        names = [n.strip() for n in v.split(",") if n.strip()]
        if not names:
            raise ValueError("lists no model; leave it unset to load every bundle")
        for n in names:
            _check_name(n)
        return ",".join(names)

    @field_validator("reload_token")
    @classmethod
    def _long_token(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not MIN_TOKEN <= len(v.get_secret_value()) <= MAX_TOKEN:
            raise ValueError(f"must be {MIN_TOKEN} to {MAX_TOKEN} characters (a random string, such as the output "
                             "of `openssl rand -hex 16`)")
        return v

    @field_validator("models_dir")
    @classmethod
    def _models_dir(cls, v: Path) -> Path:
        if not v.is_dir():
            raise ValueError(f"{str(v)!r} is not a directory")
        return v

    @model_validator(mode="after")
    def _default_is_listed(self) -> Settings:
        names = self.model_names
        if names is not None and self.default_model not in names:
            raise ValueError(f"SDLGM_DEFAULT_MODEL={self.default_model} is not among SDLGM_MODELS={self.models}")
        return self

    @model_validator(mode="after")
    def _queue_takes_a_batch(self) -> Settings:
        if self.queue_max_vectors < self.max_batch:
            raise ValueError(f"SDLGM_QUEUE_MAX_VECTORS={self.queue_max_vectors} is below SDLGM_MAX_BATCH="
                             f"{self.max_batch}: a full batch could never be queued")
        return self

    @property
    def model_names(self) -> list[str] | None:
        """The bundles SDLGM_MODELS asks for, or None to load every bundle in models_dir."""
        return self.models.split(",") if self.models else None


def describe_error(exc: ValidationError) -> str:
    """One clause per bad field naming its environment variable, e.g. `SDLGM_MAX_BATCH=0: ...`."""
    clauses = []
    for err in exc.errors():
        msg = err["msg"].removeprefix("Value error, ")
        if not err["loc"]:
            clauses.append(msg)
            continue
        value = err.get("input")
        secret = err["loc"][0] in SECRETS
        shown = f"={value}" if isinstance(value, str | int | float) and not secret else ""
        clauses.append(f"{ENV_PREFIX}{str(err['loc'][0]).upper()}{shown}: {msg}")
    return "invalid settings: " + "; ".join(clauses)
