"""docker/grafana: the provisioning files in Grafana's documented format (apiVersion 1; the fields of
"Provision Grafana" for data sources and dashboard providers, as pydantic models that refuse unknown
keys), the compose service that mounts them where they point, and the dashboard, whose every data
source reference is the provisioned uid and whose queries read series the service exports. Each check
returns its problems as strings and is also shown to catch a broken file. (The docker smoke test runs
every dashboard query against a live Prometheus.)
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import pytest
import yaml
from conftest import REPO
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, ConfigDict, Field, ValidationError

GRAFANA = REPO / "docker" / "grafana"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yaml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "sdlgm.yaml"
DASHBOARD = GRAFANA / "dashboards" / "sdlgm.json"
UID = r"^[a-zA-Z0-9_-]{1,40}$"  # Grafana's uid: at most 40 letters, digits, '-' and '_'

Obj = dict[str, Any]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Datasource(Strict):
    name: str = Field(min_length=1)
    type: str = Field(min_length=1)
    access: Literal["proxy", "direct"] = "proxy"
    orgId: int = Field(1, ge=1)
    uid: str | None = Field(None, pattern=UID)
    url: str | None = None
    user: str | None = None
    database: str | None = None
    basicAuth: bool | None = None
    basicAuthUser: str | None = None
    withCredentials: bool | None = None
    isDefault: bool | None = None
    jsonData: dict[str, Any] | None = None
    secureJsonData: dict[str, str] | None = None
    version: int | None = None
    editable: bool | None = None


class DeleteDatasource(Strict):
    name: str
    orgId: int = Field(1, ge=1)


class DatasourcesFile(Strict):
    apiVersion: Literal[1]
    datasources: list[Datasource] = Field(min_length=1)
    deleteDatasources: list[DeleteDatasource] = []
    prune: bool | None = None


class ProviderOptions(Strict):
    path: str = Field(min_length=1)
    foldersFromFilesStructure: bool | None = None


class Provider(Strict):
    name: str = Field(min_length=1)
    orgId: int = Field(1, ge=1)
    folder: str | None = None
    folderUid: str | None = None
    type: Literal["file"]
    disableDeletion: bool | None = None
    updateIntervalSeconds: int | None = Field(None, ge=0)
    allowUiUpdates: bool | None = None
    options: ProviderOptions


class ProvidersFile(Strict):
    apiVersion: Literal[1]
    providers: list[Provider] = Field(min_length=1)


def load_yaml(path: Path) -> Obj:
    doc: Obj = yaml.safe_load(path.read_text())
    return doc


def compose_grafana() -> Obj:
    service: Obj = load_yaml(REPO / "docker-compose.yml")["services"]["grafana"]
    return service


def mounts(service: Obj) -> dict[str, str]:
    """Container path -> host path of the service's bind mounts."""
    out = {}
    for volume in service.get("volumes", []):
        host, target = volume.split(":")[:2]
        if host.startswith("./"):
            out[target] = host
    return out


def datasource_refs(node: Any, where: str = "dashboard") -> list[tuple[str, Any]]:
    """Every `datasource` value in the dashboard JSON, with where it is."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                found.append((f"{where}.{key}", value))
            found.extend(datasource_refs(value, f"{where}.{key}"))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found.extend(datasource_refs(value, f"{where}[{i}]"))
    return found


def queries(dashboard: Obj) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", []) if "expr" in t]


def dashboard_problems(dashboard: Obj, datasources: DatasourcesFile) -> list[str]:
    """References to a data source that is not provisioned, panels without a unique id or a position."""
    provisioned = {(d.type, d.uid) for d in datasources.datasources}
    problems = [f"{where}: data source {ref!r} is not a provisioned one {sorted(provisioned)}"
                for where, ref in datasource_refs(dashboard)
                if not isinstance(ref, dict) or (ref.get("type"), ref.get("uid")) not in provisioned]
    ids = [p.get("id") for p in dashboard["panels"]]
    problems += [f"panel id {i} is used {ids.count(i)} times" for i in sorted(set(ids), key=str) if ids.count(i) > 1]
    problems += [f"panel {p.get('title')!r} has no gridPos" for p in dashboard["panels"] if "gridPos" not in p]
    problems += [f"dashboard has no {key}" for key in ("uid", "title", "schemaVersion") if key not in dashboard]
    return problems


def compose_problems(service: Obj, datasources: DatasourcesFile, providers: ProvidersFile, compose: Obj) -> list[str]:
    """The compose service: the official image at a pinned version, under a profile, the provisioning
    files and dashboards mounted where they point, each data source's URL a service of the stack."""
    problems = []
    if not re.fullmatch(r"grafana/grafana-oss:\d+\.\d+\.\d+", service.get("image", "")):
        problems.append(f"image {service.get('image')!r} is not grafana/grafana-oss at a pinned version")
    if "grafana" not in service.get("profiles", []):
        problems.append("grafana is not under the profile 'grafana': a plain `up` would pull it")
    binds = mounts(service)
    if binds.get("/etc/grafana/provisioning") != "./docker/grafana/provisioning":
        problems.append("docker/grafana/provisioning is not mounted at /etc/grafana/provisioning")
    for p in providers.providers:
        if binds.get(p.options.path) != "./docker/grafana/dashboards":
            problems.append(f"provider {p.name}: its path {p.options.path} is not where docker/grafana/dashboards "
                            f"is mounted ({binds})")
    for d in datasources.datasources:
        url = urlparse(d.url or "")
        target = compose["services"].get(url.hostname or "")
        ports = [str(p).rsplit(":", 1)[-1] for p in (target or {}).get("ports", [])]
        if target is None or str(url.port) not in ports:
            problems.append(f"data source {d.name}: {d.url} is no port of a service of the compose stack")
    return problems


@pytest.fixture(scope="module")
def datasources() -> DatasourcesFile:
    return DatasourcesFile.model_validate(load_yaml(DATASOURCES))


@pytest.fixture(scope="module")
def providers() -> ProvidersFile:
    return ProvidersFile.model_validate(load_yaml(PROVIDERS))


def test_the_provisioning_files_are_in_grafanas_format(datasources: DatasourcesFile, providers: ProvidersFile) -> None:
    assert [(d.type, d.uid) for d in datasources.datasources] == [("prometheus", "sdlgm-prometheus")]
    assert sum(bool(d.isDefault) for d in datasources.datasources) == 1
    assert [p.type for p in providers.providers] == ["file"]


@pytest.mark.parametrize(("path", "model", "change", "error"), [
    (DATASOURCES, DatasourcesFile, lambda d: d.update(apiVersion=2), "apiVersion"),
    (DATASOURCES, DatasourcesFile, lambda d: d["datasources"][0].pop("type"), "datasources.0.type"),
    (DATASOURCES, DatasourcesFile, lambda d: d["datasources"][0].update(isDefualt=True), "datasources.0.isDefualt"),
    (DATASOURCES, DatasourcesFile, lambda d: d["datasources"][0].update(uid="no spaces allowed"), "datasources.0.uid"),
    (DATASOURCES, DatasourcesFile, lambda d: d.update(datasources=[]), "datasources"),
    (PROVIDERS, ProvidersFile, lambda d: d["providers"][0]["options"].pop("path"), "providers.0.options.path"),
    (PROVIDERS, ProvidersFile, lambda d: d["providers"][0].update(type="url"), "providers.0.type"),
    (PROVIDERS, ProvidersFile, lambda d: d.pop("providers"), "providers"),
])
def test_a_broken_provisioning_file_is_refused(path: Path, model: type[BaseModel], change: Any, error: str) -> None:
    doc = copy.deepcopy(load_yaml(path))
    change(doc)
    with pytest.raises(ValidationError) as exc:
        model.model_validate(doc)
    assert error in {".".join(str(p) for p in e["loc"]) for e in exc.value.errors()}


def test_every_dashboard_reference_is_the_provisioned_data_source(datasources: DatasourcesFile) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert len(datasource_refs(dashboard)) > len(dashboard["panels"])  # panels and their targets
    assert dashboard_problems(dashboard, datasources) == []
    broken = copy.deepcopy(dashboard)
    broken["panels"][3]["targets"][0]["datasource"] = {"type": "prometheus", "uid": "${datasource}"}
    broken["panels"][4]["id"] = broken["panels"][5]["id"]
    assert dashboard_problems(broken, datasources) == [
        "dashboard.panels[3].targets[0].datasource: data source {'type': 'prometheus', 'uid': '${datasource}'} "
        "is not a provisioned one [('prometheus', 'sdlgm-prometheus')]",
        f"panel id {dashboard['panels'][5]['id']} is used 2 times"]


def test_compose_runs_the_official_image_under_a_profile_with_the_files_mounted(
        datasources: DatasourcesFile, providers: ProvidersFile) -> None:
    compose = load_yaml(REPO / "docker-compose.yml")
    service = compose_grafana()
    assert compose_problems(service, datasources, providers, compose) == []
    assert all(Path(REPO, host).is_dir() for host in mounts(service).values())
    broken = copy.deepcopy(service)
    broken.update(image="grafana/grafana-oss:latest", profiles=[])
    broken["volumes"] = [v for v in broken["volumes"] if "dashboards" not in v]
    elsewhere = DatasourcesFile.model_validate({**load_yaml(DATASOURCES), "datasources": [
        {**load_yaml(DATASOURCES)["datasources"][0], "url": "http://prometheus:9091"}]})
    assert compose_problems(broken, elsewhere, providers, compose) == [
        "image 'grafana/grafana-oss:latest' is not grafana/grafana-oss at a pinned version",
        "grafana is not under the profile 'grafana': a plain `up` would pull it",
        "provider sdlgm: its path /var/lib/grafana/dashboards/sdlgm is not where docker/grafana/dashboards is "
        "mounted ({'/etc/grafana/provisioning': './docker/grafana/provisioning'})",
        "data source Prometheus (sdlgm): http://prometheus:9091 is no port of a service of the compose stack"]


def test_the_dashboard_queries_read_series_the_service_exports(api: TestClient) -> None:
    api.post("/encode", json={"vector": [0.5] * 80})
    families = {f.name for f in text_string_to_metric_families(api.get("/metrics").text)}
    suffixes = ("", "_total", "_bucket", "_count", "_sum")
    exported = {f + s for f in families for s in suffixes} | {"up"}
    dashboard = json.loads(DASHBOARD.read_text())
    used = {name for q in queries(dashboard) for name in re.findall(r"\b((?:sdlgm|process)_\w+|up)\b(?=[{\[)\s])", q)}
    assert {"sdlgm_requests_total", "sdlgm_roundtrip_squared_nrmse_total", "process_resident_memory_bytes"} <= used
    assert used <= exported, used - exported
    variables = [t for t in dashboard["templating"]["list"] if t["type"] == "query"]
    assert [t["definition"] for t in variables] == ["label_values(sdlgm_model_info, model)"]
