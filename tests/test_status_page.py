"""The built-in status page (GET /) in a real browser: Debian's chromium driven by its chromedriver through
Selenium, against a real server over the committed bundles. The page loads with no console error, its
request rate moves with a burst of traffic and falls back when it stops, and, once the traffic is over,
every figure it shows equals what the service's /metrics holds (read here with prometheus_client's
parser, not through the page's /v1/status). The test saves a screenshot; with SDLGM_WRITE_SCREENSHOT=1 it
also writes it to docs/status.png (the README shows it).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from conftest import REPO, Server
from prometheus_client.parser import text_string_to_metric_families
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"  # Debian's chromium, chromium-driver
REFRESH_MS = 400
WAIT_S = 15.0
SCREENSHOT = REPO / "docs" / "status.png"


@pytest.fixture(scope="module")
def page_server(serve: Callable[..., AbstractContextManager[Server]]) -> Iterator[Server]:
    env = {"SDLGM_MODELS_DIR": str(REPO / "models"), "SDLGM_PROVIDER": "cpu", "SDLGM_QUALITY_SAMPLE_RATE": "1"}
    with serve(env) as s:
        yield s


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    for path in (CHROMIUM, CHROMEDRIVER):
        assert Path(path).exists(), f"{path} is missing: `make tools` installs chromium and chromium-driver"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1500,820"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(what: str, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        assert time.monotonic() < deadline, f"the page did not show {what} within {WAIT_S:g} s"
        time.sleep(0.05)


# One consistent read of every figure the page shows (the page rebuilds its tables on each refresh): its
# text and raw value (data-value; null when it has none), by element id, and per model and endpoint row.
SNAPSHOT_JS = """
const read = (el) => [el.textContent, el.dataset.value ? Number(el.dataset.value) : null];
const rows = (selector, key) => Object.fromEntries([...document.querySelectorAll(selector)].map((tr) => [
  tr.dataset[key], Object.fromEntries([...tr.querySelectorAll("[data-field]")].map((td) => [td.dataset.field, read(td)]))]));
return {figures: Object.fromEntries([...document.querySelectorAll(".figure")].map((el) => [el.id, read(el)])),
        ready: document.getElementById("ready").textContent, refreshes: Number(document.body.dataset.refreshes || 0),
        models: rows("#models tbody tr", "model"), endpoints: rows("#endpoints tbody tr", "endpoint")};
"""
Figure = tuple[str, float | None]


def snapshot(driver: WebDriver) -> dict[str, Any]:
    page: dict[str, Any] = driver.execute_script(SNAPSHOT_JS)
    return page


def figure(driver: WebDriver, name: str) -> Figure:
    text, value = snapshot(driver)["figures"][name]
    return text, value


def traffic(client: httpx.Client) -> int:
    """Encode and decode real-looking KPI windows (every round trip measured) and a few MNIST digits; the
    number of /encode requests."""
    window = np.asarray(json.loads((REPO / "docs" / "examples" / "window.json").read_text())["vector"])
    rng = np.random.default_rng(0)
    n = 0
    for i in range(12):
        x = window * (1 + 0.05 * rng.normal(size=(4, window.size)))
        enc = client.post("/encode", json={"vectors": x.tolist(), "format": "enum" if i % 3 else "v1"})
        assert enc.status_code == 200
        body = enc.json()
        fmt = "enum" if i % 3 else "v1"
        dec = client.post("/decode", json={"fingerprint": body["fingerprint"], "format": fmt,
                                           "codes": [{"binary": c["binary"]} for c in body["codes"]]})
        assert dec.status_code == 200
        n += 1
    for _ in range(3):
        digits = (rng.random(size=(2, 784)) < 0.2).astype(float)
        assert client.post("/encode?model=mnist", json={"vectors": digits.tolist()}).status_code == 200
        n += 1
    assert client.post("/encode", json={"vector": [1.0, 2.0]}).status_code == 400
    return n + 1


def scrape(client: httpx.Client) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def total(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **match: str) -> float:
    return sum(v for labels, v in samples.get(name, []) if all(labels.get(k) == w for k, w in match.items()))


def test_the_status_page_shows_the_services_metrics_live(page_server: Server, browser: WebDriver,
                                                         tmp_path: Path) -> None:
    browser.get(f"{page_server.url}/?refresh={REFRESH_MS}")
    wait_for("two refreshes", lambda: snapshot(browser)["refreshes"] >= 2)
    assert snapshot(browser)["ready"] == "ready"
    assert figure(browser, "rate")[1] == 0  # no inference traffic yet
    with page_server.client() as client:
        encodes = traffic(client)
        wait_for("a request rate above 0", lambda: (figure(browser, "rate")[1] or 0) > 0)
        wait_for("the rate back at 0 once the traffic stopped", lambda: figure(browser, "rate")[1] == 0)
        after = snapshot(browser)["refreshes"]
        wait_for("one more refresh", lambda: snapshot(browser)["refreshes"] > after)
        page = snapshot(browser)
        metrics = scrape(client)
    assert [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"] == []

    encode = page["endpoints"]["/encode"]
    assert int(encode["requests"][0]) == encodes == total(metrics, "sdlgm_requests_total", endpoint="/encode")
    assert int(encode["errors"][0]) == 1 == total(metrics, "sdlgm_requests_total", endpoint="/encode", status="400")
    assert int(page["figures"]["requests"][0]) == total(metrics, "sdlgm_requests_total", endpoint="/encode") + total(
        metrics, "sdlgm_requests_total", endpoint="/decode")
    finite = [float(labels["le"]) for labels, _ in metrics["sdlgm_request_duration_seconds_bucket"]
              if labels["le"] != "+Inf"]
    latencies = []
    for q in ("p50", "p95", "p99"):  # in ms with 2 decimals, within the histogram's buckets
        text, ms = encode[q]
        assert ms is not None and float(text) == pytest.approx(ms, abs=0.005)
        assert 0 < ms / 1000 <= max(finite)
        latencies.append(ms)
    assert latencies == sorted(latencies)
    for name in ("kpi5g", "mnist"):
        row = page["models"][name]
        manifest = json.loads((REPO / "models" / name / "manifest.json").read_text())
        m = {"model": name, "version": manifest["version"]}
        assert row["version"][0] == manifest["version"]
        assert row["fingerprint"][0] == manifest["fingerprint"][:12]
        assert int(row["codes_sent"][0]) == total(metrics, "sdlgm_code_nnz_count", **m)
        measured = total(metrics, "sdlgm_roundtrip_nrmse_count", **m)
        assert int(row["roundtrip_vectors"][0]) == measured > 0
        nrmse = math.sqrt(total(metrics, "sdlgm_roundtrip_squared_nrmse_total", **m) / measured)
        assert float(row["roundtrip_nrmse"][0]) == pytest.approx(nrmse, abs=5e-4)
        reference = total(metrics, "sdlgm_model_reference_nrmse", **m)
        assert float(row["reference_nrmse"][0]) == pytest.approx(reference, abs=5e-4)
        ratio = total(metrics, "sdlgm_input_bytes_total", **m) / total(metrics, "sdlgm_code_bytes_total", **m)
        assert float(row["compression_ratio"][0]) == pytest.approx(ratio, abs=0.05)
    for fmt in ("enum", "v1"):
        mean = total(metrics, "sdlgm_code_size_bytes_sum", format=fmt, model="kpi5g") / total(
            metrics, "sdlgm_code_size_bytes_count", format=fmt, model="kpi5g")
        assert f"{fmt} {mean:.2f}" in page["models"]["kpi5g"]["code_bytes"][0]

    shot = tmp_path / "status.png"
    assert browser.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    if os.environ.get("SDLGM_WRITE_SCREENSHOT") == "1":
        shutil.copyfile(shot, SCREENSHOT)


def test_the_page_and_its_assets_are_served_and_an_unknown_asset_is_a_404(page_server: Server) -> None:
    with page_server.client() as client:
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "/static/status.js" in page.text
        assert re.search(r'(src|href)="(https?:)?//', page.text) is None  # nothing from another host (no CDN)
        for name, media in (("status.js", "text/javascript"), ("status.css", "text/css")):
            r = client.get(f"/static/{name}")
            assert r.status_code == 200 and r.headers["content-type"].startswith(media)
        missing = client.get("/static/app.js")
        assert (missing.status_code, missing.json()) == (404, {
            "error": "no static file 'app.js'; there are status.css, status.js", "kind": "not_found"})


def test_with_protected_metrics_the_page_asks_for_a_token_and_then_shows_the_status(
        serve: Callable[..., AbstractContextManager[Server]], browser: WebDriver, tmp_path: Path) -> None:
    """SDLGM_AUTH_METRICS: /v1/status needs a token; the page (open) asks for one on the 401, refuses a wrong
    one visibly, and with the right one renders the status, the token never in the page's URL."""
    from selenium.webdriver.common.by import By

    token = "status-page-token-" + "7" * 20
    tokens = tmp_path / "tokens"
    tokens.write_text(token + "\n")
    env = {"SDLGM_MODELS_DIR": str(REPO / "models"), "SDLGM_PROVIDER": "cpu", "SDLGM_TOKEN_FILE": str(tokens),
           "SDLGM_AUTH_METRICS": "true"}
    with serve(env) as server:
        browser.get(f"{server.url}/?refresh={REFRESH_MS}")
        form = browser.find_element(By.ID, "token-form")
        wait_for("the token form", form.is_displayed)
        problem = browser.find_element(By.ID, "problem")
        assert problem.text == "status unavailable: a token is needed"
        for given, shown in (("wrong-token-of-the-test-0000", "status unavailable: the token was refused"),
                             (token, None)):
            field = browser.find_element(By.ID, "token")
            field.clear()
            field.send_keys(given)
            form.submit()
            if shown is not None:
                wait_for("the refusal", lambda: form.is_displayed() and problem.text == shown)  # noqa: B023
        wait_for("the status", lambda: snapshot(browser)["ready"] == "ready" and not problem.is_displayed())
        assert snapshot(browser)["figures"]["requests"][1] is not None
        assert token not in browser.current_url
        assert token not in server.log()
