"""The service's settings: one pydantic-settings class read from `SDLGM_*` environment variables.

Every setting has a safe default and unsafe values fail at start with the variable's name, the bad value
and the allowed range (see `describe_error`). The served name of a bundle is its directory name under
`models_dir` (as in Triton's model repository), so `default_model`, `models` and the `?model=` query
parameter all speak of directory names.
"""

from __future__ import annotations

import re
import ssl
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bundle import manifest
from bundle.runtime import RUN_ROWS
from service.auth import read_tokens

ENV_PREFIX = "SDLGM_"
NAME_PATTERN = re.compile(manifest.NAME_PATTERN)


def _check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise ValueError(f"{name!r} is not a model name (lower-case letters, digits, '_', '.', '-'; up to 64)")
    return name


class Settings(BaseSettings):
    """Environment variables: SDLGM_MODELS_DIR, SDLGM_DEFAULT_MODEL, SDLGM_MODELS, SDLGM_HOST, SDLGM_PORT,
    SDLGM_WORKERS, SDLGM_PROVIDER, SDLGM_ALLOW_CPU_FALLBACK, SDLGM_INTRA_OP_THREADS, SDLGM_INTER_OP_THREADS,
    SDLGM_MAX_BATCH, SDLGM_MAX_BODY_BYTES, SDLGM_REQUEST_TIMEOUT_S, SDLGM_HEADER_TIMEOUT_S, SDLGM_BODY_TIMEOUT_S,
    SDLGM_MAX_CONNECTIONS, SDLGM_DRAIN_TIMEOUT_S, SDLGM_BATCHING, SDLGM_BATCH_MAX_VECTORS, SDLGM_BATCH_MAX_DELAY_MS,
    SDLGM_QUEUE_MAX_VECTORS, SDLGM_QUALITY_SAMPLE_RATE, SDLGM_LOG_LEVEL, SDLGM_TOKEN_FILE, SDLGM_ADMIN_TOKEN_FILE,
    SDLGM_AUTH_METRICS, SDLGM_CORS_ORIGINS, SDLGM_TLS_CERTFILE, SDLGM_TLS_KEYFILE. An empty variable counts as
    unset."""

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
    probe_port: int | None = Field(default=None, ge=1, le=65535, description="a port of its own for GET "
                                   "/healthz, answered by a thread, not the event loop (service/probe.py); unset: "
                                   "none")
    probe_stall_s: float = Field(default=5.0, gt=0.0, le=600.0, description="the probe port answers 503 once the "
                                 "event loop has not turned for this long")
    max_run_rows: int = Field(default=RUN_ROWS, ge=0, le=65536, description="most rows in one onnxruntime run: a "
                              "larger batch runs in slices of this many (the same answer), which bounds "
                              "onnxruntime's CPU arena to one slice's peak and is fastest on CPU; 0: no cap "
                              "(a GPU may prefer larger runs)")
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
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    token_file: Path | None = Field(default=None, description="file of bearer tokens (one a line, '#' comments) "
                                    "that the inference and model endpoints require (service.auth); unset: open")
    admin_token_file: Path | None = Field(default=None, description="file of the bearer tokens that the admin "
                                          "endpoints (under /admin) require; unset: those of token_file")
    auth_metrics: bool = Field(default=False, description="/metrics and /v1/status need a token too")
    cors_origins: str | None = Field(default=None, description="comma-separated origins (scheme://host[:port], "
                                     "or *) whose browser pages may call the service; unset: no CORS headers")
    tls_certfile: Path | None = Field(default=None, description="PEM certificate (chain): serve HTTPS")
    tls_keyfile: Path | None = Field(default=None, description="PEM private key of tls_certfile")

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

    @field_validator("models_dir")
    @classmethod
    def _models_dir(cls, v: Path) -> Path:
        if not v.is_dir():
            raise ValueError(f"{str(v)!r} is not a directory")
        return v

    @field_validator("token_file", "admin_token_file")
    @classmethod
    def _token_file(cls, v: Path | None) -> Path | None:
        if v is not None:
            read_tokens(v)  # fail fast; the tokens themselves are read by the app (service.auth.TokenFile)
        return v

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, v: str | None) -> str | None:
        if v is None:
            return None
        origins = [o.strip().rstrip("/") for o in v.split(",") if o.strip()]
        if not origins:
            raise ValueError("lists no origin; leave it unset for no CORS")
        for origin in origins:
            parts = urlsplit(origin)
            if origin != "*" and (parts.scheme not in ("http", "https") or not parts.hostname or parts.path
                                  or parts.query or parts.fragment or parts.username is not None):
                raise ValueError(f"{origin!r} is not an origin: scheme://host[:port] (http or https, no path), or *")
        return ",".join(origins)

    @model_validator(mode="after")
    def _metrics_need_api_tokens(self) -> Settings:
        if self.auth_metrics and self.token_file is None:
            raise ValueError("SDLGM_AUTH_METRICS=true needs SDLGM_TOKEN_FILE: the metrics take the inference "
                             "tokens, and without them would stay open")
        return self

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ValueError("SDLGM_TLS_CERTFILE and SDLGM_TLS_KEYFILE go together: set both or neither")
        if self.tls_certfile is not None and self.tls_keyfile is not None:
            try:
                ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(self.tls_certfile,
                                                                                     self.tls_keyfile)
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"SDLGM_TLS_CERTFILE={self.tls_certfile} with SDLGM_TLS_KEYFILE="
                                 f"{self.tls_keyfile} does not load: {exc}") from exc
        return self

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
    def cors_origin_list(self) -> list[str]:
        """The origins SDLGM_CORS_ORIGINS allows; empty: CORS off."""
        return self.cors_origins.split(",") if self.cors_origins else []

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
        shown = f"={value}" if isinstance(value, str | int | float | Path) else ""
        clauses.append(f"{ENV_PREFIX}{str(err['loc'][0]).upper()}{shown}: {msg}")
    return "invalid settings: " + "; ".join(clauses)
