"""benchmarks/soak.py (`make soak`): a short run of the mix (single and batch encode, decode, predict) against
a real server answers every request 200 with no transport error and leaves the server healthy; an error
answer in the mix is counted as an error; and the committed docs/results/soak.json is a full-size run that
docs/reliability.md quotes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "docs" / "results" / "soak.json"


@pytest.fixture(scope="module")
def soak() -> ModuleType:
    import soak

    return soak


def test_a_short_soak_answers_every_kind_200_and_stays_healthy(soak: ModuleType, models_dir: Path) -> None:
    if shutil.which("wrk") is None:
        pytest.fail("wrk is not installed: `make bench-tools` installs it from Debian (apt-get install -y wrk)")
    figures = soak.soak(models_dir, requests=400, connections=4, warmup_s=1)
    assert figures["statuses"] == {"200": figures["requests"]}
    assert figures["warmup_requests"] > 0
    assert figures["requests"] >= 400
    assert figures["errors"] == 0 and figures["warmup_errors"] == 0
    assert [k.split(" ")[0] for k in figures["kinds"]] == ["/encode", "/encode", "/decode", "/predict?model=emotions"]
    assert figures["healthy_after"] is True
    assert figures["rss_mb"]["after"] > 0


def test_answers_other_than_200_and_transport_errors_count_as_errors(soak: ModuleType) -> None:
    clean = {"errors": {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}, "statuses": {"200": 10}}
    assert soak.errors_of(clean) == 0
    assert soak.errors_of({**clean, "statuses": {"200": 8, "503": 2}}) == 2
    assert soak.errors_of({**clean, "errors": {**clean["errors"], "read": 3}}) == 3


def test_the_committed_soak_is_a_full_run_quoted_by_the_reliability_doc(soak: ModuleType) -> None:
    figures = json.loads(RESULT.read_text())
    assert figures["requests"] >= 100_000 and figures["connections"] == 16
    doc = (REPO / "docs" / "reliability.md").read_text()
    assert f"{figures['requests']:,}" in doc
    assert f"{figures['errors']} errors" in doc
    assert f"{100 * figures['rss_growth']:.1f}%" in doc
