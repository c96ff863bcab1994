"""Shared fixtures: two small bundles made once per session with the real CLI (a Gaussian kpi5g model and
a supervised emotions model), the app over them in this process, and real `python -m service` processes
on free loopback ports.

`api` is a session-wide FastAPI TestClient over both bundles (the lifespan really loads them): what the
endpoint tables run against. `open_app(settings_of(...))` opens another one with other settings. `serve(env)`
is a context manager that starts the real server with SDLGM_* variables (and nothing else of the caller's
SDLGM_* environment), waits a bounded time for /healthz (over HTTPS when SDLGM_TLS_CERTFILE is set), and kills the process on exit; its stdout and
stderr go to files the test can read. `server` is one session-wide real server over both bundles, for
the few end-to-end tests.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:  # imported where used: tests that need no app do not pay for fastapi and onnxruntime
    from fastapi.testclient import TestClient

    from service.settings import Settings

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 60.0

# The session app's and server's settings: small enough limits that the over-limit cases stay cheap.
SESSION_SETTINGS: dict[str, object] = {"provider": "cpu", "max_batch": 300, "max_body_bytes": 1 << 20,
                                       "intra_op_threads": 2, "inter_op_threads": 1}
SESSION_ENV = {f"SDLGM_{k.upper()}": str(v) for k, v in SESSION_SETTINGS.items()}


def make_bundle(config: str, run: Path, out: Path, iterations: int = 60) -> Path:
    """Train `iterations` steps of a config and export the run to the bundle directory `out`."""
    from training.cli import main

    assert main(["train", "--config", str(REPO / config), "--out", str(run), "--set",
                 f"train.iterations={iterations}", "--set", f"train.eval_every={iterations}", "--no-progress"]) == 0
    assert main(["export", "--run", str(run), "--out", str(out), "--name", out.name]) == 0  # named as served
    return out


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models directory holding `kpi5g` (Gaussian, D=80, K=64, L0=4) and `emotions` (supervised)."""
    root = tmp_path_factory.mktemp("bundles")
    make_bundle("configs/kpi5g-shared.yaml", root / "runs" / "kpi5g", root / "models" / "kpi5g")
    make_bundle("configs/emotions-dis.yaml", root / "runs" / "emotions", root / "models" / "emotions")
    return root / "models"


def settings_of(**values: object) -> Settings:
    """Settings with these values and the defaults for the rest, whatever SDLGM_* the caller's environment
    holds (keyword arguments win over environment variables)."""
    from service.settings import Settings

    defaults = {name: f.default for name, f in Settings.model_fields.items()}
    return Settings(**{**defaults, **values})


@contextmanager
def open_app(settings: Settings) -> Iterator[TestClient]:
    """The app in this process with its lifespan run (the models loaded), as a TestClient."""
    from fastapi.testclient import TestClient

    from service.app import create_app

    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture(scope="session")
def api(models_dir: Path) -> Iterator[TestClient]:
    """The app over both session bundles, in this process, with the session settings."""
    with open_app(settings_of(models_dir=models_dir, **SESSION_SETTINGS)) as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    def client(self, timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout)

    def log(self) -> str:
        return self.stderr.read_text(errors="replace")


def server_env(env: dict[str, str], port: int) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SDLGM_")}
    return {**base, "SDLGM_HOST": "127.0.0.1", "SDLGM_PORT": str(port), **env}


def _wait_until_up(server: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited with {server.process.returncode}:\n{server.log()}")
        try:
            if httpx.get(f"{server.url}/healthz", timeout=1.0, verify=False).status_code == 200:  # TLS: any cert
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server not up after {START_TIMEOUT_S} s:\n{server.log()}")


@contextmanager
def run_server(env: dict[str, str], logs: Path, python: str = sys.executable) -> Iterator[Server]:
    """`python -m service` with these SDLGM_* variables, up and answering /healthz, killed on exit."""
    port = free_port()
    logs.mkdir(parents=True, exist_ok=True)
    out, err = logs / f"stdout-{port}.log", logs / f"stderr-{port}.log"
    with out.open("wb") as fo, err.open("wb") as fe:
        proc = subprocess.Popen([python, "-m", "service"], cwd=REPO, env=server_env(env, port), stdout=fo, stderr=fe)
    scheme = "https" if env.get("SDLGM_TLS_CERTFILE") else "http"
    server = Server(f"{scheme}://127.0.0.1:{port}", port, proc, out, err)
    try:
        _wait_until_up(server)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., AbstractContextManager[Server]]:
    """serve(env, python=...) -> context manager of a running server."""
    logs = tmp_path_factory.mktemp("server-logs")

    def start(env: dict[str, str], python: str = sys.executable) -> AbstractContextManager[Server]:
        return run_server(env, logs, python)

    return start


@pytest.fixture(scope="session")
def server(models_dir: Path, serve: Callable[..., AbstractContextManager[Server]]) -> Iterator[Server]:
    with serve({"SDLGM_MODELS_DIR": str(models_dir), **SESSION_ENV}) as s:
        yield s


@pytest.fixture(scope="session")
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c
