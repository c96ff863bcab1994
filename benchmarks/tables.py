"""A benchmark's result table on disk (a JSON list of row objects) that several runs fill in turn."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def merge_row(path: Path, row: dict[str, Any], key: str, order: Sequence[str], indent: int = 2) -> list[dict[str, Any]]:
    """Put row into the table at path, replacing the row with the same `key` value and dropping rows whose
    key is not in `order`, sorted by `order`. The file is read just before it is written, so that runs of
    different rows (--only) can share one table."""
    rows = json.loads(path.read_text()) if path.exists() else []
    rows = [r for r in rows if r[key] in order and r[key] != row[key]] + [row]
    rows.sort(key=lambda r: list(order).index(r[key]))
    path.write_text(json.dumps(rows, indent=indent) + "\n")
    return rows
