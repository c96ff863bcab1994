"""benchmarks/serve_bench.py (`make bench`): a tiny end-to-end run (--quick: 1-s wrk runs) against real
servers writes every figure with its reference, ratio and goal and rewrites the doc's table from them;
goals are judged on the ratio or the value as declared; a missing wrk is a clear error; and the committed
docs/serving.md quotes the committed docs/results/serving.json.

wrk comes from Debian (`make bench-tools`, run by `make test`): without it the end-to-end test fails,
saying how to install it, rather than skipping."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "docs" / "results" / "serving.json"
DOC = REPO / "docs" / "serving.md"


@pytest.fixture(scope="module")
def serve_bench() -> ModuleType:
    import serve_bench

    return serve_bench


def test_a_quick_run_writes_every_figure_with_its_reference_ratio_and_goal(serve_bench: ModuleType,
                                                                           tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        pytest.fail("wrk is not installed: `make bench-tools` installs it from Debian (apt-get install -y wrk)")
    doc, out = tmp_path / "serving.md", tmp_path / "serving.json"
    doc.write_text(f"# Serving\n\n{serve_bench.DOC_BEGIN}\nthe old table\n{serve_bench.DOC_END}\n\nafter\n")
    assert serve_bench.main(["--quick", "--out", str(out), "--doc", str(doc)]) == 0
    result = json.loads(out.read_text())
    figures = {f["name"]: f for f in result["figures"]}
    assert list(figures) == list(serve_bench.FIGURES)
    for name, f in figures.items():
        assert f["value"] > 0 and f["reference"]["value"] > 0 and f["reference"]["what"], name
        assert f["ratio"] == pytest.approx(f["value"] / f["reference"]["value"]), name
        goal = serve_bench.GOALS[name]
        assert (f["goal"]["on"], f["goal"]["op"], f["goal"]["target"]) == (goal.on, goal.op, goal.target)
        assert f["met"] is goal.met(f["value"], f["ratio"]), name
        assert len(f["rounds"]) == len(f["reference_rounds"]) == 1, name  # --quick: one round, one start
    batch = figures["encode_batch_json"]["detail"]
    assert batch["raw_ms_per_batch"][0] == pytest.approx(256 / figures["encode_batch_json"]["reference"]["value"] * 1e3,
                                                         rel=1e-3)
    settings = result["settings"]
    assert settings["quick"] and settings["duration_s"] == 1 and settings["batch_size"] == 256
    assert settings["service_env"]["SDLGM_BATCHING"] == "true" and settings["concurrency"] == 64
    assert result["machine"]["cpus"] >= 1 and len(result["commit"]) == 40 and result["notes"]
    text = doc.read_text()
    assert serve_bench.table(result) in text and "the old table" not in text and text.endswith("after\n")


@pytest.mark.parametrize(("goal", "value", "ratio", "met"), [
    (("ratio", ">=", 0.8), 1.0, 0.8, True), (("ratio", ">=", 0.8), 1e9, 0.79, False),
    (("ratio", "<=", 1.0), 5.0, 1.0, True), (("ratio", "<=", 1.0), 0.1, 1.01, False),
    (("value", "<", 200.0), 199.9, 5.0, True), (("value", "<", 200.0), 200.0, 0.1, False),
])
def test_a_goal_is_judged_on_what_it_names(serve_bench: ModuleType, goal: tuple[str, str, float], value: float,
                                           ratio: float, met: bool) -> None:
    assert serve_bench.Goal(*goal).met(value, ratio) is met


def test_a_missing_wrk_says_how_to_install_it(serve_bench: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"make bench-tools.*apt-get install -y wrk"):
        serve_bench.main(["--quick", "--wrk", str(tmp_path / "no-wrk"), "--out", str(tmp_path / "out.json")])
    assert not (tmp_path / "out.json").exists()


def test_the_doc_quotes_the_committed_results(serve_bench: ModuleType) -> None:
    result = json.loads(RESULT.read_text())
    assert [f["name"] for f in result["figures"]] == list(serve_bench.FIGURES) and not result["settings"]["quick"]
    assert serve_bench.table(result) in DOC.read_text()
