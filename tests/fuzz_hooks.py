"""Schemathesis hooks of tests/test_fuzz.py (loaded by `st run` through SCHEMATHESIS_HOOKS): the check
`routes_not_schema`, which holds on the inference operations instead of positive_data_acceptance."""

from __future__ import annotations

import re
from typing import Any

import schemathesis

MODEL_FACTS = re.compile(r"^/(encode|decode|predict)$|^/v2/models/\{model\}(/versions/\{version\})?/infer$")
SCHEMA_REFUSALS = ("invalid request: ", "invalid JSON: ")


@schemathesis.check
def routes_not_schema(ctx: Any, response: Any, case: Any) -> bool | None:
    """On an inference operation, a schema-valid request is refused only by the route's checks of the model's
    facts (D, K, L0, tensor shapes), never by the request schema the service validates with."""
    meta = case.meta
    if not MODEL_FACTS.match(case.operation.path) or meta is None or not meta.generation.mode.is_positive:
        return None
    if response.status_code not in (400, 422):
        return None
    error = str(response.json().get("error", ""))
    if error.startswith(SCHEMA_REFUSALS):
        raise AssertionError(f"a request valid by the OpenAPI schema failed the service's request schema: {error}")
    return None
