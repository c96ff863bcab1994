"""Fuzzing: schemathesis (`st run`, its command line, in a subprocess) against a real `python -m service` on
loopback (the session's two bundles, bearer tokens on), every operation of its OpenAPI schema in its
examples, coverage, fuzzing and stateful phases, at most MAX_EXAMPLES cases per operation and phase,
seeded (the same cases every run), with every check:

- no 5xx (not_a_server_error); answers as the schema declares them: status codes, content types, headers and
  bodies (status_code_conformance, content_type_conformance, response_headers_conformance,
  response_schema_conformance); a method a path lacks answered 405 with `Allow` (unsupported_method,
  allow_header_conformance); schema-invalid requests refused (negative_data_rejection, missing_required_header);
  a request without the token refused (ignored_auth);
- schema-valid requests accepted (positive_data_acceptance) on every operation whose validity the schema can
  state. On the inference operations (/encode, /decode, /predict, V2 infer) it cannot state all of it: a
  vector's length is the chosen model's D, a code's indices lie below its K and its counts sum to at most its
  L0, a V2 tensor has the shapes and datatypes of the model's metadata. There tests/fuzz_hooks.py's
  `routes_not_schema` holds instead (FUZZ_CONFIG): a schema-valid request may be refused only by the route's
  own checks of the model's facts, never by the request schema the service validates with (FastAPI's
  "invalid request: ..." and "invalid JSON: ..." answers), so the OpenAPI schema and the service's pydantic
  models cannot disagree unseen.

What it found is fixed in the service and pinned by tests of their own (tests/test_service_errors.py,
tests/test_service_e2e.py, tests/test_codes.py, tests/service_cases.py): a 405 without `Allow`, a 500 on an
Inference-Header-Content-Length of a non-ASCII digit, format-1 codes with unsorted indices taken, and a
schema that let pass bodies the service refuses (neither or both of `vector` and `vectors`, nulls, empty or
oversized batches, values beyond float32, invalid base64, negative indices) and declared no body for V2
inference, and integer fields that refused 1.0 (an integer to JSON Schema) and wrote their bounds as "ge".
The pytest plugin of schemathesis 4.32 does not run under pytest 9 (`'Function' object has no attribute
'_nodeid'`), hence the command line; one worker, since two threads trip Python 3.11's ast in hypothesis
("AST constructor recursion depth mismatch"). About 1,200 cases in 40 s.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from conftest import REPO, SESSION_ENV, Server

MAX_EXAMPLES = 25
TIMEOUT_S = 240
TOKEN = "fuzz-token-0123456789abcdef0123"
FUZZ_CONFIG = """
[[operations]]
include-path-regex = '^/(encode|decode|predict)$|^/v2/models/\\{model\\}(/versions/\\{version\\})?/infer$'
checks.positive_data_acceptance.enabled = false
"""


@pytest.fixture(scope="module")
def fuzzed(models_dir: Path, tmp_path_factory: pytest.TempPathFactory,
           serve: Callable[..., AbstractContextManager[Server]]) -> Iterator[Server]:
    tokens = tmp_path_factory.mktemp("fuzz") / "tokens"
    tokens.write_text(TOKEN)
    env = {"SDLGM_MODELS_DIR": str(models_dir), **SESSION_ENV, "SDLGM_TOKEN_FILE": str(tokens),
           "SDLGM_QUALITY_SAMPLE_RATE": "0", "SDLGM_LOG_LEVEL": "warning"}
    with serve(env) as server:
        yield server


def test_the_service_answers_every_request_as_its_schema_says(fuzzed: Server, tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(FUZZ_CONFIG)
    st = Path(sys.executable).with_name("st")
    done = subprocess.run(
        [str(st), "--config-file", str(config), "run", f"{fuzzed.url}/openapi.json",
         "--max-examples", str(MAX_EXAMPLES), "--seed", "1", "--generation-database", "none", "--workers", "1",
         "--header", f"Authorization: Bearer {TOKEN}", "--max-failures", "50", "--no-color",
         "--request-timeout", "30", "--suppress-health-check", "all"],
        cwd=tmp_path, env={"SCHEMATHESIS_HOOKS": str(REPO / "tests" / "fuzz_hooks.py"), "PATH": "/usr/bin:/bin",
                           "HOME": str(tmp_path)}, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stdout[-20000:] + done.stderr[-5000:]
    assert "routes_not_schema" not in done.stdout
    assert fuzzed.process.poll() is None  # still serving
