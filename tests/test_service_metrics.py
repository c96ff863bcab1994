"""GET /metrics of the app in this process: every metric family is exported, labels are route
templates, every model metric carries `model` and `version`, L_hat and nnz have a bucket per count,
process metrics and no `_created` series, and the counters move by what the traffic in between did."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import open_app, settings_of
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from bundle.manifest import load_manifest
from bundle.runtime import open_bundle

FAMILIES = {
    "sdlgm_requests": "counter", "sdlgm_request_duration_seconds": "histogram",
    "sdlgm_inference_seconds": "histogram", "sdlgm_batch_size": "histogram", "sdlgm_code_L_hat": "histogram",
    "sdlgm_code_nnz": "histogram", "sdlgm_input_bytes": "counter", "sdlgm_code_bytes": "counter",
    "sdlgm_errors": "counter", "sdlgm_in_flight_requests": "gauge", "sdlgm_model_info": "gauge",
    "sdlgm_code_size_bytes": "histogram", "sdlgm_roundtrip_nrmse": "histogram", "sdlgm_queue_vectors": "gauge",
    "sdlgm_shed_requests": "counter", "sdlgm_coalesced_batch_size": "histogram", "sdlgm_coalesced_requests": "histogram",
    "sdlgm_roundtrip_squared_nrmse": "counter", "sdlgm_model_reference_nrmse": "gauge", "sdlgm_ready": "gauge",
}
V = [0.5] * 80
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client: httpx.Client) -> Samples:
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    families = list(text_string_to_metric_families(r.text))
    assert {f.name: f.type for f in families if f.name in FAMILIES} == FAMILIES
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}


def value(samples: Samples, metric: str, **labels: str) -> float:
    return samples.get((metric, tuple(sorted(labels.items()))), 0.0)


def test_metrics_follow_the_traffic(api: TestClient) -> None:
    before = scrape(api)
    for _ in range(3):
        assert api.post("/encode", json={"vectors": [V, V]}).status_code == 200
    assert api.post("/encode", json={"vector": V[:3]}).status_code == 400
    assert api.get("/v1/models/kpi5g").status_code == 200
    assert api.get("/no/such/path").status_code == 404
    enc = api.post("/encode", json={"vector": V}).json()["codes"][0]
    after = scrape(api)

    def delta(metric: str, **labels: str) -> float:
        return value(after, metric, **labels) - value(before, metric, **labels)

    kpi = {"model": "kpi5g", "version": api.get("/v1/models/kpi5g").json()["version"]}
    none = {"model": "", "version": ""}  # a request that named no loaded model
    ok = {"endpoint": "/encode", **kpi, "status": "200"}
    assert delta("sdlgm_requests_total", **ok) == 4
    assert delta("sdlgm_request_duration_seconds_count", **ok) == 4
    assert delta("sdlgm_requests_total", endpoint="/encode", **kpi, status="400") == 1  # D is checked
    assert delta("sdlgm_requests_total", endpoint="/v1/models/{name}", **none, status="200") == 1
    assert delta("sdlgm_requests_total", endpoint="other", **none, status="404") == 1
    assert delta("sdlgm_errors_total", kind="invalid_input") == 1
    assert delta("sdlgm_errors_total", kind="not_found") == 1
    assert delta("sdlgm_batch_size_count", endpoint="/encode", **kpi) == 4
    assert delta("sdlgm_batch_size_sum", endpoint="/encode", **kpi) == 7
    assert delta("sdlgm_code_L_hat_count", **kpi) == 7
    assert delta("sdlgm_code_nnz_count", **kpi) == 7
    for graph in ("encoder", "sparsity"):
        assert delta("sdlgm_inference_seconds_count", **kpi, graph=graph) == 4
    assert delta("sdlgm_input_bytes_total", **kpi) == 7 * 80 * 4
    assert delta("sdlgm_code_bytes_total", **kpi) == 7 * enc["size_bytes"]  # 7 times this vector
    assert value(after, "sdlgm_in_flight_requests") == 1  # the scrape itself


def test_model_info_names_each_model_with_its_provider(api: TestClient) -> None:
    samples = scrape(api)
    models = {m["name"]: m for m in api.get("/v1/models").json()["models"]}
    for name, m in models.items():
        assert value(samples, "sdlgm_model_info", model=name, version=m["version"], fingerprint=m["fingerprint"],
                     provider="CPUExecutionProvider") == 1


def test_code_sizes_per_format_and_the_sampled_round_trip_error(models_dir: Path) -> None:
    rng = np.random.default_rng(5)
    manifest = load_manifest(models_dir / "kpi5g")
    st = manifest.standardization
    assert st is not None
    x = (np.asarray(st.mean) + rng.normal(size=(6, manifest.D)) * np.asarray(st.std)).astype(np.float32)
    runtime = open_bundle(models_dir / "kpi5g")
    _, counts = runtime.encode(x)
    x_hat = runtime.decode(counts.astype(np.float32)).astype(np.float64)
    want = np.sqrt((((x_hat - x) / np.asarray(st.std)) ** 2).mean(1))
    with open_app(settings_of(models_dir=models_dir, quality_sample_rate=1.0)) as client:
        before = scrape(client)
        enc = client.post("/encode", json={"vectors": x.tolist(), "format": "enum"}).json()["codes"]
        client.post("/encode", json={"vectors": x[:2].tolist()})
        after = scrape(client)
    kpi = {"model": "kpi5g", "version": manifest.version}
    assert value(after, "sdlgm_roundtrip_nrmse_count", **kpi) - value(before, "sdlgm_roundtrip_nrmse_count", **kpi) == 8
    assert value(after, "sdlgm_roundtrip_nrmse_sum", **kpi) - value(
        before, "sdlgm_roundtrip_nrmse_sum", **kpi) == pytest.approx(want.sum() + want[:2].sum(), rel=1e-5)
    assert value(after, "sdlgm_roundtrip_squared_nrmse_total", **kpi) - value(
        before, "sdlgm_roundtrip_squared_nrmse_total", **kpi) == pytest.approx(
        (want**2).sum() + (want[:2] ** 2).sum(), rel=1e-5)
    assert value(after, "sdlgm_code_size_bytes_count", **kpi, format="enum") == 6
    assert value(after, "sdlgm_code_size_bytes_sum", **kpi, format="enum") == sum(
        c["size_bytes"] for c in enc) == 6 * 3
    assert value(after, "sdlgm_code_size_bytes_count", **kpi, format="v1") == 2
    with open_app(settings_of(models_dir=models_dir, quality_sample_rate=0.0)) as client:
        client.post("/encode", json={"vectors": x.tolist()})
        none = scrape(client)
    assert value(none, "sdlgm_roundtrip_nrmse_count", **kpi) == 0


def test_no_created_series_and_this_processs_metrics(api: TestClient) -> None:
    text = api.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert "_created" not in text
    for name, kind in (("process_cpu_seconds", "counter"), ("process_resident_memory_bytes", "gauge"),
                       ("process_start_time_seconds", "gauge"), ("process_open_fds", "gauge")):
        assert families[name].type == kind
        [sample] = families[name].samples
        assert sample.labels == {} and sample.value > 0  # one process: no pid label


def test_every_model_metric_carries_the_model_and_its_version(api: TestClient) -> None:
    versions = {m["name"]: m["version"] for m in api.get("/v1/models").json()["models"]}
    versions[""] = ""  # requests that named no loaded model
    enc = api.post("/encode", json={"vectors": [V, V]}).json()
    api.post("/decode", json={"fingerprint": enc["fingerprint"], "codes": [{"binary": c["binary"]} for c in enc["codes"]]})
    emotions = api.get("/v1/models/emotions").json()
    api.post("/predict?model=emotions", json={"vector": [0.1] * emotions["D"]})
    api.get("/no/such/path")
    samples = [s for f in text_string_to_metric_families(api.get("/metrics").text) for s in f.samples]
    with_model = [s for s in samples if "model" in s.labels]
    assert {s.name for s in with_model} >= {"sdlgm_requests_total", "sdlgm_inference_seconds_count",
                                            "sdlgm_code_nnz_bucket", "sdlgm_model_info", "sdlgm_queue_vectors",
                                            "sdlgm_model_reference_nrmse", "sdlgm_coalesced_requests_count"}
    assert {s.labels["model"] for s in with_model} == set(versions)
    for s in with_model:
        assert s.labels.get("version") == versions[s.labels["model"]], s
    assert not [s for s in samples if "name" in s.labels]  # one label name for a model everywhere


def test_L_hat_and_nnz_have_one_bucket_per_count_up_to_each_models_L0(api: TestClient) -> None:
    x = {"kpi5g": [V] * 5, "emotions": [[0.1] * api.get("/v1/models/emotions").json()["D"]] * 3}
    before = scrape(api)
    sent = {name: api.post(f"/encode?model={name}", json={"vectors": rows}).json()["codes"] for name, rows in x.items()}
    families = {f.name: f for f in text_string_to_metric_families(api.get("/metrics").text)}
    for name, codes in sent.items():
        info = api.get(f"/v1/models/{name}").json()
        L0 = info["L0"]
        for metric, field in (("sdlgm_code_L_hat", "L_hat"), ("sdlgm_code_nnz", "nnz")):
            buckets = {s.labels["le"]: s.value for s in families[metric].samples
                       if s.name == f"{metric}_bucket" and s.labels["model"] == name}
            assert list(buckets) == [f"{float(k)}" for k in range(L0 + 1)] + ["+Inf"]
            labels = {"model": name, "version": info["version"]}
            for k in range(L0 + 1):  # cumulative counts: the codes with at most k, before and now
                then = value(before, f"{metric}_bucket", **labels, le=f"{float(k)}")
                assert buckets[f"{float(k)}"] - then == sum(c[field] <= k for c in codes)


def test_readiness_and_each_bundles_reference_error_are_exported(models_dir: Path) -> None:
    with open_app(settings_of(models_dir=models_dir, models="kpi5g,emotions")) as client:
        ready = scrape(client)
    with open_app(settings_of(models_dir=models_dir, models="kpi5g,absent")) as client:
        unready = scrape(client)
    assert value(ready, "sdlgm_ready") == 1 and value(unready, "sdlgm_ready") == 0
    manifest = load_manifest(models_dir / "kpi5g")
    assert value(ready, "sdlgm_model_reference_nrmse", model="kpi5g", version=manifest.version) == \
        manifest.evaluation["nrmse"]


def test_worker_processes_are_the_live_ones_of_the_directory(tmp_path: Path) -> None:
    from service.metrics import WorkerProcesses

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout.strip()
        for pid in (child.pid, dead):
            (tmp_path / f"gauge_livesum_{pid}.db").write_bytes(b"")
        (tmp_path / f"counter_{dead}.db").write_bytes(b"")  # counters outlive their process
        workers = WorkerProcesses(str(tmp_path))
        assert workers.pids() == sorted([os.getpid(), child.pid])
        families = {m.name: m for m in workers.collect()}
        rss = {s.labels["pid"]: s.value for s in families["process_resident_memory_bytes"].samples}
        assert set(rss) == {str(os.getpid()), str(child.pid)} and all(v > 0 for v in rss.values())
    finally:
        child.kill()
        child.wait()
