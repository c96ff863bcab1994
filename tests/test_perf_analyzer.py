"""Triton's perf_analyzer (installed by `make bench-tools` under .tools/) drives the session's real service
over the V2 protocol, as an operator would point it: it reads the model's metadata and configuration, sends
binary tensors of random data at two concurrent requests, and every request it sends is answered 200."""

from __future__ import annotations

import csv
import re
import subprocess
from pathlib import Path

import httpx
from conftest import REPO, Server

PERF_ANALYZER = REPO / ".tools" / "perf_analyzer" / "perf_analyzer"


def infer_answers(metrics: str, model: str) -> dict[str, float]:
    """/v2/models/{model}/infer answers by status, from the Prometheus text."""
    pattern = re.compile(r'^sdlgm_requests_total\{endpoint="/v2/models/\{model\}/infer",model="' + model
                         + r'",status="(\d+)",version="[^"]*"\} (\S+)$', re.M)
    return {status: float(n) for status, n in pattern.findall(metrics)}


def test_perf_analyzer_drives_the_service(server: Server, client: httpx.Client, tmp_path: Path) -> None:
    assert PERF_ANALYZER.exists(), "perf_analyzer is missing: run `make bench-tools`"
    before = infer_answers(client.get("/metrics").text, "kpi5g")
    report = tmp_path / "perf.csv"
    run = subprocess.run([str(PERF_ANALYZER), "-m", "kpi5g-encode", "-u", f"127.0.0.1:{server.port}", "-i", "http",
                          "-b", "8", "--concurrency-range", "2", "--measurement-mode", "count_windows",
                          "--measurement-request-count", "50", "-s", "100", "--max-trials", "3", "-f", str(report)],
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    rows = list(csv.DictReader(report.open()))
    assert len(rows) == 1 and rows[0]["Concurrency"] == "2" and float(rows[0]["Inferences/Second"]) > 0, rows
    after = infer_answers(client.get("/metrics").text, "kpi5g")
    sent = {s: after.get(s, 0.0) - before.get(s, 0.0) for s in after}
    assert set(s for s, n in sent.items() if n) == {"200"} and sent["200"] >= 50, (sent, run.stdout)
