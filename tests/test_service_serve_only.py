"""The service runs in a virtual environment with only the `serve` extra: no torch there, and
`python -m service` from it serves the session's bundles until /readyz answers 200.

It uses `.venv-serve` (what `make .venv-serve` builds) and creates it when missing (python -m venv +
pip install '.[serve]', about a minute with a warm pip cache), or reinstalls the extra when pyproject.toml
is newer than the venv's stamp file; a failed install leaves no half venv.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from conftest import REPO, Server

VENV = REPO / ".venv-serve"
STAMP = VENV / ".serve-extra-installed"


def serve_only_python() -> Path:
    python = VENV / "bin" / "python"
    if STAMP.exists() and STAMP.stat().st_mtime >= (REPO / "pyproject.toml").stat().st_mtime:
        return python
    try:
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, timeout=120)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-e", f"{REPO}[serve]"], check=True,
                       timeout=900, cwd=REPO)
    except BaseException:
        shutil.rmtree(VENV, ignore_errors=True)
        raise
    STAMP.touch()
    return python


def test_the_app_serves_from_the_serve_extra_alone(models_dir: Path,
                                                   serve: Callable[..., AbstractContextManager[Server]]) -> None:
    python = serve_only_python()
    no_torch = subprocess.run([str(python), "-c", "import torch"], capture_output=True, text=True, timeout=60)
    assert no_torch.returncode != 0 and "No module named 'torch'" in no_torch.stderr
    with serve({"SDLGM_MODELS_DIR": str(models_dir)}, python=str(python)) as srv, srv.client() as c:
        ready = c.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert c.post("/encode", json={"vector": [0.0] * 80}).status_code == 200
