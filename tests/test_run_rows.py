"""ModelRuntime.run_rows (SDLGM_MAX_RUN_ROWS): a large batch runs in slices, each onnxruntime run gets at
most run_rows rows, and the answer is the one of a single run; the setting reaches the service's runtimes."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import REPO, settings_of

from bundle.runtime import RUN_ROWS, ModelRuntime, open_bundle
from service.registry import load_registry


class Recording:
    """An onnxruntime session that records the rows of each run it is given."""

    def __init__(self, session: Any) -> None:
        self.session, self.rows = session, []  # type: list[int]

    def run(self, outputs: list[str], feed: dict[str, np.ndarray]) -> Any:
        self.rows.append(len(next(iter(feed.values()))))
        return self.session.run(outputs, feed)


@pytest.fixture(scope="module")
def kpi5g() -> ModelRuntime:
    return open_bundle(REPO / "models" / "kpi5g", threads=(1, 1))


def recording(runtime: ModelRuntime, run_rows: int) -> tuple[ModelRuntime, dict[str, Recording]]:
    sessions = {role: Recording(s) for role, s in runtime.sessions.items()}
    return dataclasses.replace(runtime, sessions=sessions, run_rows=run_rows), sessions  # type: ignore[arg-type]


@pytest.mark.parametrize(("rows", "run_rows", "runs"), [(10, 3, [3, 3, 3, 1]), (6, 3, [3, 3]), (2, 3, [2]),
                                                        (7, 0, [7])])
def test_a_batch_runs_in_slices_of_at_most_run_rows(kpi5g: ModelRuntime, rows: int, run_rows: int,
                                                    runs: list[int]) -> None:
    sliced, sessions = recording(kpi5g, run_rows)
    x = np.random.default_rng(1).standard_normal((rows, kpi5g.manifest.D)).astype(np.float32)
    L_hat, counts = sliced.encode(x)
    whole_L_hat, whole_counts = dataclasses.replace(kpi5g, run_rows=0).encode(x)
    assert sessions["encoder"].rows == runs
    np.testing.assert_array_equal(counts, whole_counts)
    np.testing.assert_array_equal(L_hat, whole_L_hat)
    z = counts.astype(np.float32)
    np.testing.assert_array_equal(sliced.decode(z), dataclasses.replace(kpi5g, run_rows=0).decode(z))
    assert sessions["decoder"].rows == runs


def test_the_service_setting_reaches_every_runtime(models_dir: Path) -> None:
    assert settings_of(models_dir=models_dir).max_run_rows == RUN_ROWS
    loading = load_registry(settings_of(models_dir=models_dir, max_run_rows=5), lambda *_: None)
    assert loading.registry.models and {m.run_rows for m in loading.registry.models.values()} == {5}
