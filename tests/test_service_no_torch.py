"""service/ imports no torch and nothing of model/ or training/: in a fresh interpreter whose imports of
those packages fail, the app is built, its lifespan loads both bundles, and it encodes and predicts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import REPO

SCRIPT = """
import importlib.abc, sys

class Forbid(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "model", "training"):
            raise ImportError(f"service must not import {name}")
        return None

sys.meta_path.insert(0, Forbid())
import service.__main__  # noqa: F401  (the entry point and everything it imports)
from fastapi.testclient import TestClient
from service.app import create_app
from service.settings import Settings

with TestClient(create_app(Settings(models_dir=sys.argv[1]))) as client:
    assert client.get("/readyz").status_code == 200
    assert client.post("/encode", json={"vector": [0.0] * 80}).status_code == 200
    assert client.post("/predict?model=emotions", json={"vector": [0.0] * 72}).status_code == 200
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "model", "training"))
assert not bad, bad
print("ok")
"""


def test_the_service_runs_without_torch(models_dir: Path) -> None:
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", SCRIPT, str(models_dir)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
