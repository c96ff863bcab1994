"""The service runs in a virtual environment holding only `docker/serve.lock` (the pinned `serve` extra, as
the image installs it): no torch and no sdlgm distribution there, and `python -m service` from it, run in the
checkout like the image runs it in /app, serves the session's bundles until /readyz answers 200. The lock
satisfies every requirement of pyproject's `serve` and `gpu` extras.

It uses `.venv-serve` (what `make venv-serve` builds) and creates it when missing (python -m venv + pip
install -r docker/serve.lock, about a minute with a warm pip cache), or reinstalls when the lock is newer
than the venv's stamp file; a failed install leaves no half venv.
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
    if STAMP.exists() and STAMP.stat().st_mtime >= (REPO / "docker" / "serve.lock").stat().st_mtime:
        return python
    try:
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, timeout=120)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-r", str(REPO / "docker" / "serve.lock")],
                       check=True, timeout=900, cwd=REPO)
    except BaseException:
        shutil.rmtree(VENV, ignore_errors=True)
        raise
    STAMP.touch()
    return python


def test_the_app_serves_from_the_serve_extra_alone(models_dir: Path,
                                                   serve: Callable[..., AbstractContextManager[Server]]) -> None:
    python = serve_only_python()
    # Outside the checkout nothing of the project is importable: the env carries the pinned packages only.
    probe = ("import importlib.util; print(sorted(m for m in ('torch', 'model', 'training', 'bundle', 'service') "
             "if importlib.util.find_spec(m)))")
    found = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, timeout=60, cwd="/")
    assert found.returncode == 0 and found.stdout.strip() == "[]", (found.stdout, found.stderr)
    with serve({"SDLGM_MODELS_DIR": str(models_dir)}, python=str(python)) as srv, srv.client() as c:
        ready = c.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert c.post("/encode", json={"vector": [0.0] * 80}).status_code == 200


def pins(lock: Path) -> dict[str, str]:
    lines = [ln for ln in lock.read_text().splitlines() if ln and not ln.startswith("#")]
    return dict(ln.split("==") for ln in lines)


def test_the_locks_satisfy_the_extras() -> None:
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra in ("serve", "gpu"):
        pinned = {canonicalize_name(n): v for n, v in pins(REPO / "docker" / f"{extra}.lock").items()}
        assert "torch" not in pinned
        for line in extras[extra]:
            req = Requirement(line)
            name = canonicalize_name(req.name)
            assert name in pinned, f"docker/{extra}.lock has no {name}: run `make lock`"
            assert req.specifier.contains(pinned[name]), f"docker/{extra}.lock pins {name}=={pinned[name]}, " \
                f"outside {req.specifier}: run `make lock`"
