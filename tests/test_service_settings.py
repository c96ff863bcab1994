"""Settings: defaults, SDLGM_* environment variables, and the fail-fast messages for unsafe values, both
in process and from `python -m service` (exit status 2, one line naming the variable)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, free_port, server_env
from pydantic import ValidationError

from service.settings import Settings, describe_error


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for key in [k for k in os.environ if k.startswith("SDLGM_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("SDLGM_MODELS_DIR", str(tmp_path))
    return monkeypatch


def test_defaults(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    s = Settings()
    assert (s.models_dir, s.default_model, s.models, s.model_names) == (tmp_path, "kpi5g", None, None)
    assert (s.host, s.port, s.provider, s.allow_cpu_fallback) == ("127.0.0.1", 8000, "auto", True)
    assert (s.intra_op_threads, s.inter_op_threads, s.max_batch) == (1, 1, 1024)
    assert (s.max_body_bytes, s.request_timeout_s, s.log_level) == (8 * 1024 * 1024, 10.0, "info")
    assert (s.workers, s.batching, s.batch_max_vectors, s.batch_max_delay_ms, s.queue_max_vectors) == (
        1, True, 256, 0.0, 4096)
    assert (s.header_timeout_s, s.body_timeout_s, s.max_connections, s.drain_timeout_s) == (5.0, 10.0, 512, 8.0)
    assert (s.token_file, s.admin_token_file, s.auth_metrics, s.cors_origin_list) == (None, None, False, [])
    assert (s.tls_certfile, s.tls_keyfile) == (None, None)
    assert s.drain_timeout_s + 1.5 < 10  # the drain and the lifespan's end fit Docker's 10 s stop grace period


def test_environment_variables_are_read(clean_env: pytest.MonkeyPatch) -> None:
    for key, value in {"MODELS": " kpi5g , emotions ", "PORT": "9000", "PROVIDER": "cpu",
                       "ALLOW_CPU_FALLBACK": "false", "MAX_BATCH": "64", "REQUEST_TIMEOUT_S": "0.5", "WORKERS": "3",
                       "BATCHING": "false", "BATCH_MAX_VECTORS": "32", "BATCH_MAX_DELAY_MS": "2.5",
                       "QUEUE_MAX_VECTORS": "64", "HEADER_TIMEOUT_S": "2.5", "BODY_TIMEOUT_S": "30",
                       "MAX_CONNECTIONS": "100", "DRAIN_TIMEOUT_S": "0"}.items():
        clean_env.setenv(f"SDLGM_{key}", value)
    s = Settings()
    assert s.model_names == ["kpi5g", "emotions"]
    assert (s.port, s.provider, s.allow_cpu_fallback, s.max_batch, s.request_timeout_s) == (9000, "cpu", False, 64, 0.5)
    assert (s.workers, s.batching, s.batch_max_vectors, s.batch_max_delay_ms, s.queue_max_vectors) == (
        3, False, 32, 2.5, 64)
    assert (s.header_timeout_s, s.body_timeout_s, s.max_connections, s.drain_timeout_s) == (2.5, 30.0, 100, 0.0)


def test_an_empty_variable_counts_as_unset(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("SDLGM_MAX_BATCH", "")
    clean_env.setenv("SDLGM_MODELS", "")
    assert (Settings().max_batch, Settings().model_names) == (1024, None)


BAD = [
    ({"SDLGM_MAX_BATCH": "0"}, "SDLGM_MAX_BATCH=0: Input should be greater than or equal to 1"),
    ({"SDLGM_MAX_BATCH": "many"}, "SDLGM_MAX_BATCH=many: Input should be a valid integer"),
    ({"SDLGM_MAX_BODY_BYTES": "10"}, "SDLGM_MAX_BODY_BYTES=10: Input should be greater than or equal to 1024"),
    ({"SDLGM_REQUEST_TIMEOUT_S": "0"}, "SDLGM_REQUEST_TIMEOUT_S=0: Input should be greater than 0"),
    ({"SDLGM_QUALITY_SAMPLE_RATE": "1.5"}, "SDLGM_QUALITY_SAMPLE_RATE=1.5: Input should be less than or equal to 1"),
    ({"SDLGM_PORT": "70000"}, "SDLGM_PORT=70000: Input should be less than or equal to 65535"),
    ({"SDLGM_PROVIDER": "tpu"}, "SDLGM_PROVIDER=tpu: Input should be 'cpu', 'cuda' or 'auto'"),
    ({"SDLGM_INTRA_OP_THREADS": "-1"}, "SDLGM_INTRA_OP_THREADS=-1: Input should be greater than or equal to 0"),
    ({"SDLGM_LOG_LEVEL": "loud"}, "SDLGM_LOG_LEVEL=loud: Input should be 'critical', 'error'"),
    ({"SDLGM_MODELS_DIR": "/no/such/dir"}, "SDLGM_MODELS_DIR=/no/such/dir: '/no/such/dir' is not a directory"),
    ({"SDLGM_DEFAULT_MODEL": "Bad Name"}, "SDLGM_DEFAULT_MODEL=Bad Name: 'Bad Name' is not a model name"),
    ({"SDLGM_MODELS": " , "}, "SDLGM_MODELS= , : lists no model; leave it unset to load every bundle"),
    ({"SDLGM_MODELS": "emotions"}, "SDLGM_DEFAULT_MODEL=kpi5g is not among SDLGM_MODELS=emotions"),
    ({"SDLGM_WORKERS": "0"}, "SDLGM_WORKERS=0: Input should be greater than or equal to 1"),
    ({"SDLGM_BATCHING": "maybe"}, "SDLGM_BATCHING=maybe: Input should be a valid boolean"),
    ({"SDLGM_BATCH_MAX_VECTORS": "0"}, "SDLGM_BATCH_MAX_VECTORS=0: Input should be greater than or equal to 1"),
    ({"SDLGM_BATCH_MAX_DELAY_MS": "-1"}, "SDLGM_BATCH_MAX_DELAY_MS=-1: Input should be greater than or equal to 0"),
    ({"SDLGM_HEADER_TIMEOUT_S": "0"}, "SDLGM_HEADER_TIMEOUT_S=0: Input should be greater than 0"),
    ({"SDLGM_BODY_TIMEOUT_S": "-1"}, "SDLGM_BODY_TIMEOUT_S=-1: Input should be greater than 0"),
    ({"SDLGM_MAX_CONNECTIONS": "0"}, "SDLGM_MAX_CONNECTIONS=0: Input should be greater than or equal to 1"),
    ({"SDLGM_DRAIN_TIMEOUT_S": "-1"}, "SDLGM_DRAIN_TIMEOUT_S=-1: Input should be greater than or equal to 0"),
    ({"SDLGM_AUTH_METRICS": "true"}, "SDLGM_AUTH_METRICS=true needs SDLGM_TOKEN_FILE: the metrics take the "
     "inference tokens, and without them would stay open"),
    ({"SDLGM_QUEUE_MAX_VECTORS": "100"}, "SDLGM_QUEUE_MAX_VECTORS=100 is below SDLGM_MAX_BATCH=1024: a full batch "
     "could never be queued"),
]


@pytest.mark.parametrize(("env", "message"), BAD, ids=[next(iter(e)) + "=" + next(iter(e.values())) for e, _ in BAD])
def test_unsafe_values_fail_with_the_variable_named(clean_env: pytest.MonkeyPatch, env: dict[str, str],
                                                    message: str) -> None:
    for key, value in env.items():
        clean_env.setenv(key, value)
    with pytest.raises(ValidationError) as info:
        Settings()
    assert message in describe_error(info.value)


def test_the_server_refuses_to_start_on_unsafe_settings(tmp_path: Path) -> None:
    env = server_env({"SDLGM_MODELS_DIR": str(tmp_path), "SDLGM_MAX_BATCH": "0", "SDLGM_REQUEST_TIMEOUT_S": "-1"},
                     free_port())
    done = subprocess.run([sys.executable, "-m", "service"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == ("invalid settings: SDLGM_MAX_BATCH=0: Input should be greater than or equal to 1; "
                                   "SDLGM_REQUEST_TIMEOUT_S=-1: Input should be greater than 0")
