"""docker/alerts.yml: Prometheus's own promtool (Debian's `prometheus` package; `make tools` installs it)
checks the rules and runs their unit tests (docker/alerts_test.yml), in which every alert fires on
series that break its rule and stays silent on series that do not; each firing case is shown to fail
when its alert can never fire. The series the rules read are ones the service exports, and the compose
stack's Prometheus loads the file."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

DOCKER = REPO / "docker"
RULES, RULE_TESTS = DOCKER / "alerts.yml", DOCKER / "alerts_test.yml"
NEVER = "vector(0) > 1"  # an expression that is never true


def promtool(*args: str, cwd: Path = DOCKER) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool is not None, "promtool is missing: `make tools` installs Debian's prometheus package, which has it"
    return subprocess.run([tool, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def alerts(path: Path = RULES) -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]}


def test_promtool_checks_the_rules() -> None:
    out = promtool("check", "rules", RULES.name)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in out.stdout


def test_every_alert_fires_on_its_cases_and_stays_silent_on_the_others() -> None:
    out = promtool("test", "rules", RULE_TESTS.name)
    assert out.returncode == 0, out.stdout + out.stderr
    cases = [case for test in yaml.safe_load(RULE_TESTS.read_text())["tests"] for case in test["alert_rule_test"]]
    assert {c["alertname"] for c in cases if c["exp_alerts"]} == set(alerts())
    assert {c["alertname"] for c in cases if not c["exp_alerts"]} == set(alerts())
    assert set(alerts()) == {"SdlgmHigh5xxRatio", "SdlgmHighP99Latency", "SdlgmDown", "SdlgmNotReady",
                             "SdlgmCodeQualityDrift"}


@pytest.mark.parametrize("alert", sorted(alerts()))
def test_a_rule_that_never_fires_fails_its_unit_test(alert: str, tmp_path: Path) -> None:
    doc = yaml.safe_load(RULES.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            if rule["alert"] == alert:
                rule["expr"] = NEVER
    (tmp_path / RULES.name).write_text(yaml.safe_dump(doc))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    out = promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert out.returncode != 0
    assert f"alertname: {alert}," in out.stdout + out.stderr


def test_the_rules_read_series_the_service_exports(api: TestClient) -> None:
    api.post("/encode", json={"vector": [0.5] * 80})
    families = {f.name for f in text_string_to_metric_families(api.get("/metrics").text)}
    exported = families | {f"{f}_total" for f in families} | {f"{f}_{s}" for f in families for s in ("bucket", "count")}
    used = {name for rule in alerts().values() for name in re.findall(r"\b(sdlgm_\w+)", rule["expr"])}
    assert used and used <= exported, used - exported
    assert "up" in {name for rule in alerts().values() for name in re.findall(r"\b(up)\{", rule["expr"])}


def test_the_compose_prometheus_loads_the_rules() -> None:
    config = yaml.safe_load((DOCKER / "prometheus.yml").read_text())
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1)[::-1] for v in compose["services"]["prometheus"]["volumes"]
                  if v.startswith("./"))
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    assert mounts["/etc/prometheus/alerts.yml"] == "./docker/alerts.yml"
