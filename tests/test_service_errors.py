"""Every bad-input case against the app in this process (`service_cases.CASES`): the exact status, kind
and error text, the one JSON shape, the field errors listed in "detail", one count in sdlgm_errors_total
under the case's kind; the guard's 413 for bodies without a Content-Length; the app stays healthy; and a
bug answers 500 in the same shape with its traceback logged.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SESSION_SETTINGS, settings_of
from fastapi.testclient import TestClient
from service_cases import CASES, JSON, LIMIT, Case, V, expected_error, fingerprints, send

from service.app import create_app
from service.errors import MAX_DETAIL, MAX_LISTED_ERRORS


@pytest.fixture(scope="module")
def fps(api: TestClient) -> dict[str, str]:
    return fingerprints(api)


def errors_counted(api: TestClient, kind: str) -> float:
    value = api.app.state.metrics.registry.get_sample_value("sdlgm_errors_total", {"kind": kind})  # type: ignore[attr-defined]
    return float(value or 0.0)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gets_its_status_kind_and_message(api: TestClient, fps: dict[str, str], case: Case) -> None:
    before = errors_counted(api, case.kind)
    r = send(api, case, fps)
    body = r.json()
    assert (r.status_code, body["kind"], body["error"]) == (case.status, case.kind, expected_error(case, fps))
    assert r.headers["content-type"] == "application/json"
    if body["error"].startswith("invalid request: "):  # a schema error: its fields are listed in "detail"
        assert set(body) == {"error", "kind", "detail"}
        listed = "; ".join(f"{d['loc']}: {d['msg']}" for d in body["detail"])
        assert body["error"] == f"invalid request: {listed}"
        assert all(set(d) == {"loc", "msg", "type"} for d in body["detail"])
    else:
        assert set(body) == {"error", "kind"}
    assert errors_counted(api, case.kind) == before + 1


def test_many_field_errors_are_listed_five_in_the_message_and_twenty_in_the_detail(api: TestClient) -> None:
    n = 80
    r = api.post("/encode", content='{"vector": [' + ", ".join(["NaN"] * n) + "]}", headers=JSON)
    assert r.status_code == 400
    body = r.json()
    assert [d["loc"] for d in body["detail"]] == [f"body.vector.{i}" for i in range(MAX_DETAIL)]
    assert {d["type"] for d in body["detail"]} == {"finite_number"}
    listed = "; ".join(f"body.vector.{i}: Input should be a finite number" for i in range(MAX_LISTED_ERRORS))
    assert body["error"] == f"invalid request: {listed} (and {n - MAX_LISTED_ERRORS} more)"


def test_exactly_five_field_errors_have_no_more_clause(api: TestClient) -> None:
    vector = ["x"] * MAX_LISTED_ERRORS + V[MAX_LISTED_ERRORS:]
    body = api.post("/encode", json={"vector": vector}).json()
    assert len(body["detail"]) == MAX_LISTED_ERRORS
    assert not body["error"].endswith("more)")


@pytest.mark.parametrize("size", [LIMIT + 1, 3 * LIMIT // 2])
def test_a_body_without_content_length_over_the_limit_is_refused(api: TestClient, size: int) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(math.ceil(size / 4096)):
            yield b" " * 4096

    r = api.post("/encode", content=chunks(), headers=JSON)
    assert "content-length" not in r.request.headers
    assert (r.status_code, r.json()) == (413, {
        "error": f"request body is over the limit of {LIMIT} bytes (SDLGM_MAX_BODY_BYTES)",
        "kind": "payload_too_large"})


def test_a_body_of_exactly_the_limit_is_read(api: TestClient) -> None:
    body = b'{"vector": [' + b",".join([b"0.5"] * 80) + b"]}"
    padded = body + b" " * (LIMIT - len(body))
    assert len(padded) == LIMIT
    r = api.post("/encode", content=padded, headers=JSON)
    assert r.status_code == 200, r.text


def test_the_app_stays_healthy_after_bad_input(api: TestClient, fps: dict[str, str]) -> None:
    for case in CASES:  # all of them again, back to back
        assert send(api, case, fps).status_code == case.status
    assert api.get("/healthz").status_code == 200
    assert api.get("/readyz").status_code == 200
    assert api.post("/encode", json={"vector": V}).status_code == 200


def test_a_bug_answers_500_in_the_one_shape_and_logs_its_traceback(models_dir: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(settings_of(models_dir=models_dir, **SESSION_SETTINGS))
    with TestClient(app, raise_server_exceptions=False) as c:
        registry = app.state.registry
        registry.models["kpi5g"] = dataclasses.replace(registry.models["kpi5g"], sessions={})  # no graph to run
        r = c.post("/encode", json={"vector": V})
        metrics = c.get("/metrics").text
    assert (r.status_code, r.json()) == (500, {"error": "internal error; the server log has the traceback",
                                               "kind": "internal"})
    [record] = [rec for rec in caplog.records if rec.getMessage() == "internal error on POST /encode"]
    assert record.levelname == "ERROR" and record.exc_info is not None and record.exc_info[0] is KeyError
    assert 'sdlgm_errors_total{kind="internal"} 1.0' in metrics
    version = registry.models["kpi5g"].manifest.version
    assert f'sdlgm_requests_total{{endpoint="/encode",model="kpi5g",status="500",version="{version}"}} 1.0' in metrics


@pytest.mark.parametrize(("method", "path", "allowed"), [("GET", "/encode", "POST"), ("TRACE", "/healthz", "GET"),
                                                         ("DELETE", "/v1/models", "GET"), ("PUT", "/healthz", "GET"),
                                                         ("POST", "/readyz", "GET")])
def test_a_405_names_the_allowed_methods(api: TestClient, method: str, path: str, allowed: str) -> None:
    """Also for a body of no media type (a 415 where a route would take it): found by tests/test_fuzz.py."""
    r = api.request(method, path, headers={"content-type": ""})
    assert (r.status_code, r.json()["kind"]) == (405, "method_not_allowed")
    assert r.headers["allow"] == allowed  # RFC 9110: a 405 carries Allow

