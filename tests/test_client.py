"""client/: against real `python -m service` processes, a round trip of the real KPI window of
docs/examples/window.json (the same codes and reconstructions as the JSON endpoints give), the service's
errors as exceptions (409 for another model's codes as FingerprintMismatch), and, against a tiny HTTP
server of this file that answers 503, retries that honour Retry-After and stop where they should."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, Server

from bundle.manifest import load_manifest
from client import Client, Codes, FingerprintMismatch, Retry, ServiceError, Unavailable
from client.sdlgm import retry_after_s

WINDOW = json.loads((REPO / "docs" / "examples" / "window.json").read_text())["vector"]
ENV = {"SDLGM_PROVIDER": "cpu", "SDLGM_QUALITY_SAMPLE_RATE": "0"}


@pytest.fixture(scope="module")
def default_server(serve: Callable[..., AbstractContextManager[Server]]) -> Iterator[Server]:
    """The committed default model, as `make serve` serves it."""
    with serve({"SDLGM_MODELS_DIR": str(REPO / "models"), **ENV}) as s:
        yield s


def kpi_rows() -> np.ndarray:
    """The real window and two shifted copies of it (RSRP 3 dB up and down): (3, 80) float32."""
    x = np.array([WINDOW] * 3, dtype=np.float32)
    x[1, 0::8] += 3.0
    x[2, 0::8] -= 3.0
    return x


@pytest.mark.parametrize("fmt", ["v1", "enum"])
def test_round_trip_of_real_kpi_rows_matches_the_json_endpoints(default_server: Server, fmt: str) -> None:
    x = kpi_rows()
    with Client(default_server.url) as sdlgm, default_server.client() as http:
        codes = sdlgm.encode(x, format=fmt)
        x_hat = sdlgm.decode(codes)
        encoded = http.post("/encode", json={"vectors": x.tolist(), "format": fmt}).json()
        decoded = http.post("/decode", json={"fingerprint": encoded["fingerprint"], "format": fmt,
                                             "codes": [{"binary": c["binary"]} for c in encoded["codes"]]}).json()
    assert (codes.model, codes.fingerprint, codes.format) == ("kpi5g", encoded["fingerprint"], fmt)
    assert list(codes.blobs) == [base64.b64decode(c["binary"]) for c in encoded["codes"]]
    assert x_hat.dtype == np.float32 and x_hat.shape == x.shape
    np.testing.assert_array_equal(x_hat, np.array(decoded["reconstructions"], dtype=np.float32))
    # the default model keeps RSRP (column 0 of each second) within a few dB
    assert np.abs(x_hat[:, 0::8] - x[:, 0::8]).mean() < 10.0
    stored = Codes.of_framed(codes.framed(), len(codes), model=codes.model, fingerprint=codes.fingerprint, format=fmt)
    assert stored == codes


def test_one_vector_encodes_as_a_batch_of_one(default_server: Server) -> None:
    with Client(default_server.url, model="kpi5g") as sdlgm:
        codes = sdlgm.encode(WINDOW)
        assert len(codes) == 1
        assert sdlgm.decode(codes).shape == (1, 80)
        assert sdlgm.encode(WINDOW, stochastic=True, seed=7) == sdlgm.encode(WINDOW, stochastic=True, seed=7)


def test_service_errors_become_exceptions_with_status_and_kind(default_server: Server) -> None:
    with Client(default_server.url) as sdlgm:
        with pytest.raises(ServiceError) as short:
            sdlgm.encode([1.0, 2.0])
        with pytest.raises(ServiceError) as unknown:
            sdlgm.encode(WINDOW, model="nosuchmodel")
        with pytest.raises(ServiceError) as no_format:
            sdlgm.encode(WINDOW, format="v9")
        with pytest.raises(ValueError, match="shape"):
            sdlgm.encode(np.zeros((2, 2, 80)))
    assert (short.value.status, short.value.kind) == (400, "invalid_input")
    assert short.value.message == "binary body of 8 bytes is not whole rows of D = 80 float32 values (320 bytes a row)"
    assert (unknown.value.status, unknown.value.kind) == (404, "unknown_model")
    assert (no_format.value.status, no_format.value.kind) == (400, "invalid_input")
    assert "format" in no_format.value.message


def test_codes_of_another_model_raise_fingerprint_mismatch(
        models_dir: Path, tmp_path: Path, serve: Callable[..., AbstractContextManager[Server]]) -> None:
    """Two models with decoders on one server: the committed kpi5g and a freshly trained one as `other`."""
    repo = tmp_path / "models"
    repo.mkdir()
    shutil.copytree(REPO / "models" / "kpi5g", repo / "kpi5g")  # copies: symlinks out of the directory are refused
    shutil.copytree(models_dir / "kpi5g", repo / "other")
    with serve({"SDLGM_MODELS_DIR": str(repo), **ENV}) as server, Client(server.url) as sdlgm:
        codes = sdlgm.encode(kpi_rows(), model="kpi5g")
        assert sdlgm.decode(codes).shape == (3, 80)
        with pytest.raises(FingerprintMismatch) as mismatch:
            sdlgm.decode(codes, model="other")
    assert (mismatch.value.status, mismatch.value.kind) == (409, "fingerprint_mismatch")
    assert "they are codes of model 'kpi5g': use ?model=kpi5g" in str(mismatch.value)


# --- retries, against a server that answers 503 ------------------------------------------------------------

ONE_CODE = b"\x01\x01\x05\x02"  # format v1: version 1, one non-zero, index 5, count 2


@contextmanager
def flaky_server(answers: list[tuple[int, dict[str, str]]]) -> Iterator[tuple[str, list[float]]]:
    """A loopback server answering POST /encode with `answers` in turn (status, headers) and then 200 with
    one framed code; yields its URL and the times the requests came."""
    seen: list[float] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            self.rfile.read(int(self.headers["Content-Length"]))
            seen.append(time.monotonic())
            status, headers = answers.pop(0) if answers else (200, {})
            if status == 200:
                body = len(ONE_CODE).to_bytes(2, "little") + ONE_CODE
                headers = {"Content-Type": "application/octet-stream", "X-SDLGM-Model": "kpi5g",
                           "X-SDLGM-Fingerprint": "ab" * 32, "X-SDLGM-Format": "v1", "X-SDLGM-Count": "1"}
            else:
                body = json.dumps({"error": "busy; retry later", "kind": "overloaded"}).encode()
                headers = {"Content-Type": "application/json", **headers}
            self.send_response(status)
            for k, v in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def test_a_503_is_retried_after_its_retry_after() -> None:
    with flaky_server([(503, {"Retry-After": "1"})]) as (url, seen), Client(url) as sdlgm:
        codes = sdlgm.encode(WINDOW)
    assert codes.blobs == (ONE_CODE,) and codes.fingerprint == "ab" * 32
    assert len(seen) == 2
    assert seen[1] - seen[0] >= 1.0


def test_retries_stop_after_the_attempts_allowed() -> None:
    with flaky_server([(503, {"Retry-After": "0"})] * 5) as (url, seen), Client(url, retry=Retry(attempts=3)) as c, \
            pytest.raises(Unavailable) as gave_up:
        c.encode(WINDOW)
    assert len(seen) == 3
    assert (gave_up.value.status, gave_up.value.kind) == (503, "overloaded")
    assert "still unavailable after 3 tries" in str(gave_up.value)


def test_a_retry_after_over_the_limit_is_not_waited_for() -> None:
    with flaky_server([(503, {"Retry-After": "120"})]) as (url, seen), \
            Client(url, retry=Retry(max_wait_s=5.0)) as sdlgm:
        started = time.monotonic()
        with pytest.raises(Unavailable, match="asks to retry after 120 s, over this client's limit of 5 s"):
            sdlgm.encode(WINDOW)
    assert len(seen) == 1 and time.monotonic() - started < 5.0


def test_without_retry_after_the_wait_doubles() -> None:
    waits: list[float] = []
    with flaky_server([(503, {}), (503, {})]) as (url, seen), \
            Client(url, retry=Retry(attempts=3, default_wait_s=0.25), sleep=waits.append) as sdlgm:
        assert sdlgm.encode(WINDOW).blobs == (ONE_CODE,)
    assert waits == [0.25, 0.5] and len(seen) == 3


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert retry_after_s("7") == 7.0
    assert retry_after_s(format_datetime(now + timedelta(seconds=90), usegmt=True), now) == 90.0
    assert retry_after_s(format_datetime(now - timedelta(seconds=90), usegmt=True), now) == 0.0
    assert retry_after_s("soon") is None and retry_after_s(None) is None


def test_the_client_imports_no_torch_fastapi_or_service() -> None:
    script = ("import sys, client; bad = sorted(m for m in sys.modules if m.split('.')[0] in "
              "('torch', 'fastapi', 'starlette', 'pydantic', 'service', 'bundle', 'model', 'training')); "
              "assert not bad, bad")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_the_readme_example_runs_and_says_what_it_gets(default_server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # the example opens docs/examples/window.json
    readme = (REPO / "README.md").read_text()
    block = readme.split("### Python client", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    assert "http://127.0.0.1:8000" in block
    scope: dict[str, object] = {}
    exec(compile(block.replace("http://127.0.0.1:8000", default_server.url), "README.md", "exec"), scope)
    codes, x_hat = scope["codes"], scope["x_hat"]
    assert isinstance(codes, Codes) and isinstance(x_hat, np.ndarray)
    said_bytes = int(re.search(r"one (\d+)-byte code", block).group(1))  # type: ignore[union-attr]
    said_value = float(re.search(r"x_hat\[0, 0\] = (-?[0-9.]+)", block).group(1))  # type: ignore[union-attr]
    assert (codes.model, codes.format, [len(b) for b in codes.blobs]) == ("kpi5g", "enum", [said_bytes])
    assert said_bytes == load_manifest(REPO / "models" / "kpi5g").code_space.enum_bytes
    assert x_hat.shape == (1, 80) and round(float(x_hat[0, 0]), 2) == said_value
