"""The OpenAPI schema as the service really answers (tests/test_fuzz.py holds the service to it): FastAPI's,
plus what depends on the settings, written in once when the schema is first asked for.

- Access control (service.auth): with tokens configured, the bearer scheme, and on each operation that needs
  a token its `security` and the 401 (and 403 on admin paths) answers.
- Limits: the most vectors or codes a request may carry (SDLGM_MAX_BATCH) as `maxItems`.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from service.auth import required
from service.settings import Settings

SCHEME = "bearer"
ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}
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


def install_openapi(app: FastAPI, settings: Settings) -> None:
    """Make app.openapi() answer FastAPI's schema with the settings' parts written in."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            _secure(schema, settings)
            _limits(schema, settings)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend the schema
