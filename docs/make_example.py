"""Writes docs/examples/window.json: the first held-out 10-second KPI window of the default model's test
traces, as the body of a POST /encode (the README's curl example), and window_enum.json: the same body
asking for the enum format. Run: `python docs/make_example.py`."""

from __future__ import annotations

import json
from pathlib import Path

from bundle.manifest import load_manifest
from training.config import saved_config
from training.tasks import load_task

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    m = load_manifest(ROOT / "models" / "kpi5g")
    task = load_task(saved_config(m.training["config"]).data)
    body = {"vector": [round(float(v), 3) for v in task.test[0]]}
    (ROOT / "docs" / "examples" / "window.json").write_text(json.dumps(body) + "\n")
    (ROOT / "docs" / "examples" / "window_enum.json").write_text(json.dumps({**body, "format": "enum"}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
