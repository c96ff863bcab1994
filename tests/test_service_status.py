"""GET /v1/status (service/status.py), the figures of the status page: its quantiles are Prometheus's own
histogram_quantile (checked against promtool evaluating the same buckets), and its counts, sizes and
errors are those of /metrics after real traffic."""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import open_app, settings_of
from prometheus_client.parser import text_string_to_metric_families

from bundle.manifest import load_manifest
from service.status import histogram_quantile

INF = math.inf


@pytest.mark.parametrize(("q", "buckets", "want"), [
    (0.5, {1.0: 0, 2.0: 10, INF: 10}, 1.5),  # linear inside the bucket that holds the rank
    (0.5, {0.5: 4, 1.0: 4, INF: 4}, 0.25),  # the first bucket starts at 0
    (0.99, {1.0: 5, INF: 10}, 1.0),  # a rank in +Inf: the largest finite bound
    (0.5, {1.0: 0, INF: 0}, None),  # no observation
    (0.5, {}, None),
])
def test_histogram_quantile_by_hand(q: float, buckets: dict[float, float], want: float | None) -> None:
    assert histogram_quantile(q, buckets) == want


def test_histogram_quantile_is_prometheuss(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    bounds = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0]
    cases = []
    for i in range(6):
        counts = np.cumsum(rng.integers(0, 20, size=len(bounds) + 1)).tolist()
        buckets = dict(zip([*bounds, INF], map(float, counts), strict=True))
        for q in (0.5, 0.9, 0.99):
            got = histogram_quantile(q, buckets)
            assert got is not None
            cases.append((i, q, buckets, got))
    tests = {"evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [{"series": f'h_bucket{{case="{i}", le="{"+Inf" if le == INF else le}"}}', "values": f"{n}x2"}
                         for i, _, buckets, _ in cases[::3] for le, n in buckets.items()],
        "promql_expr_test": [{"expr": f'histogram_quantile({q}, h_bucket{{case="{i}"}})', "eval_time": "1m",
                              "exp_samples": [{"labels": f'{{case="{i}"}}', "value": got}]} for i, q, _, got in cases],
    }]}
    (tmp_path / "quantiles_test.yml").write_text(yaml.safe_dump(tests))
    tool = shutil.which("promtool")
    assert tool is not None, "promtool is missing: `make tools` installs Debian's prometheus package, which has it"
    out = subprocess.run([tool, "test", "rules", "quantiles_test.yml"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_status_holds_what_the_metrics_hold(models_dir: Path) -> None:
    manifest = load_manifest(models_dir / "kpi5g")
    st = manifest.standardization
    assert st is not None
    x = (np.asarray(st.mean) + np.random.default_rng(1).normal(size=(5, manifest.D)) * np.asarray(st.std)).tolist()
    with open_app(settings_of(models_dir=models_dir, quality_sample_rate=1.0)) as client:
        for fmt in ("v1", "enum", "enum"):
            assert client.post("/encode", json={"vectors": x, "format": fmt}).status_code == 200
        assert client.post("/encode", json={"vector": [1.0]}).status_code == 400
        assert client.get("/healthz").status_code == 200
        text = client.get("/metrics").text
        status = client.get("/v1/status").json()
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]

    def total(name: str, **match: str) -> float:
        return sum(s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in match.items()))

    endpoints = {e["endpoint"]: e for e in status["endpoints"]}
    encode = endpoints["/encode"]
    assert (encode["requests"], encode["errors"], encode["traffic"]) == (4, 1, True)
    assert endpoints["/healthz"]["traffic"] is False and endpoints["/metrics"]["requests"] == 1
    assert status["requests"] == 4 and status["ready"] is True and status["in_flight"] == 1
    buckets = {float(s.labels["le"]): 0.0 for s in samples if s.name == "sdlgm_request_duration_seconds_bucket"}
    for s in samples:
        if s.name == "sdlgm_request_duration_seconds_bucket" and s.labels["endpoint"] == "/encode":
            buckets[float(s.labels["le"])] += s.value
    assert encode["latency_s"] == {f"p{round(q * 100)}": histogram_quantile(q, buckets) for q in (0.5, 0.95, 0.99)}
    [kpi] = [m for m in status["models"] if m["model"] == "kpi5g"]
    labels = {"model": "kpi5g", "version": manifest.version}
    assert (kpi["version"], kpi["fingerprint"], kpi["codes_sent"], kpi["roundtrip_vectors"]) == (
        manifest.version, manifest.fingerprint, 15, 15)
    assert kpi["requests"] == total("sdlgm_requests_total", **labels) == 4
    assert kpi["code_bytes"] == {fmt: total("sdlgm_code_size_bytes_sum", **labels, format=fmt) / total(
        "sdlgm_code_size_bytes_count", **labels, format=fmt) for fmt in ("enum", "v1")}
    assert kpi["roundtrip_nrmse"] == pytest.approx(math.sqrt(
        total("sdlgm_roundtrip_squared_nrmse_total", **labels) / total("sdlgm_roundtrip_nrmse_count", **labels)))
    assert kpi["reference_nrmse"] == manifest.evaluation["nrmse"]
    assert kpi["compression_ratio"] == total("sdlgm_input_bytes_total", **labels) / total(
        "sdlgm_code_bytes_total", **labels)
    [emotions] = [m for m in status["models"] if m["model"] == "emotions"]
    assert (emotions["codes_sent"], emotions["mean_nnz"], emotions["roundtrip_nrmse"]) == (0, None, None)
