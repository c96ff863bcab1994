"""The OpenAPI schema as the service really answers (tests/test_fuzz.py holds the service to it): FastAPI's,
plus what depends on the settings, written in once when the schema is first asked for.

- Access control (service.auth): with tokens configured, the bearer scheme, and on each operation that needs
  a token its `security` and the 401 (and 403 on admin paths) answers.
- Limits: the most vectors or codes a request may carry (SDLGM_MAX_BATCH) as `maxItems`.
- Examples of the model names the service loaded (`?model=`, /v1/models/{name}, /v2/models/{model},
  the version of each), read when the schema is first asked for: examples, not an enum, since a name
  outside them is answered (404), not malformed.
- The JSON body of KServe V2 inference (service.kserve.InferRequest), which its route parses itself (the
  binary tensor extension, a JSON header and raw bytes, is docs/serving.md's: no schema can state it).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from service.auth import required
from service.kserve import InferRequest
from service.registry import ModelRegistry
from service.settings import Settings
from service.v2models import v2_models

SCHEME = "bearer"
ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}
COMPONENT = "#/components/schemas/{model}"
V2_INFER = ("/v2/models/{model}/infer", "/v2/models/{model}/versions/{version}/infer")
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
BATCH_FIELDS = {"VectorsRequest": "vectors", "EncodeRequest": "vectors", "PredictRequest": "vectors",
                "DecodeRequest": "codes"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR_REF}}}


def _secure(schema: dict[str, Any], settings: Settings) -> None:
    api_tokens = settings.token_file is not None
    if not api_tokens and settings.admin_token_file is None:
        return
    schema.setdefault("components", {}).setdefault("securitySchemes", {})[SCHEME] = {
        "type": "http", "scheme": "bearer", "description": "a token of SDLGM_TOKEN_FILE (admin endpoints: of "
        "SDLGM_ADMIN_TOKEN_FILE)"}
    for path, item in schema.get("paths", {}).items():
        needs = required(path, api_tokens, settings.auth_metrics)
        if needs == "open":
            continue
        for method, operation in item.items():
            if method not in METHODS:
                continue
            operation["security"] = [{SCHEME: []}]
            responses = operation.setdefault("responses", {})
            responses["401"] = _error("no bearer token, or not a valid one (with WWW-Authenticate: Bearer)")
            if needs == "admin":
                responses["403"] = _error("a valid token that does not grant the admin endpoints")


def _limits(schema: dict[str, Any], settings: Settings) -> None:
    models = schema.get("components", {}).get("schemas", {})
    for name, field in BATCH_FIELDS.items():
        prop = models.get(name, {}).get("properties", {}).get(field)
        if prop is None:
            continue
        for branch in prop.get("anyOf", [prop]):
            if branch.get("type") == "array":
                branch["maxItems"] = settings.max_batch


def _v2_body(schema: dict[str, Any]) -> None:
    body = InferRequest.model_json_schema(ref_template=COMPONENT)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(body.pop("$defs", {}))
    components["InferRequest"] = body
    for path in V2_INFER:
        operation = schema.get("paths", {}).get(path, {}).get("post")
        if operation is not None:
            operation["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": {"$ref": COMPONENT.format(model="InferRequest")}}}}


def _examples(schema: dict[str, Any], registry: ModelRegistry | None) -> None:
    if registry is None or not registry.models:
        return
    names = sorted(registry.models)
    v2_names = sorted(n for r in registry.models.values() for n in v2_models(r))
    versions = sorted({r.manifest.version for r in registry.models.values()})
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            for parameter in operation.get("parameters", []):
                where, name = parameter.get("in"), parameter.get("name")
                if (where == "query" and name == "model") or (where == "path" and path.startswith("/v1/models/")):
                    parameter["examples"] = {n: {"value": n} for n in names}
                elif where == "path" and name == "model" and path.startswith("/v2/"):
                    parameter["examples"] = {n: {"value": n} for n in v2_names}
                elif name == "version" and path.startswith("/v2/"):
                    parameter["examples"] = {v: {"value": v} for v in versions}


def install_openapi(app: FastAPI, settings: Settings) -> None:
    """Make app.openapi() answer FastAPI's schema with the settings' parts written in."""
    build = app.openapi

    built_for: list[object] = [None]  # the registry whose models the cached schema's examples name

    def openapi() -> dict[str, Any]:
        registry = getattr(app.state, "registry", None)
        if app.openapi_schema is None or built_for[0] is not registry:  # a reload swapped the registry in
            app.openapi_schema = None  # FastAPI's own openapi() returns its cache when set: build anew
            schema = build()
            _secure(schema, settings)
            _limits(schema, settings)
            _v2_body(schema)
            _examples(schema, registry)
            app.openapi_schema, built_for[0] = schema, registry
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend the schema
