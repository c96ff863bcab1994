"""The one error shape every failure answers with, and the handlers that produce it.

Body: `{"error": "<what went wrong and what to do>", "kind": "<machine-readable kind>"}`, plus `"detail"`
(the list of field errors) for malformed requests. Status: 400 malformed input (the Triton/KServe
convention), 404 unknown model or path, 405, 409 code of another model, 413 body too large, 415 not
JSON, 422 operation the model cannot do, 503 inference timeout or a full queue (kind `overloaded`, with
Retry-After), 500 a bug (logged with its traceback). `kind` is also the label of `sdlgm_errors_total`.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.metrics import Metrics
from service.schemas import ErrorResponse

log = logging.getLogger("sdlgm.service")

MAX_LISTED_ERRORS = 5  # in the message
MAX_DETAIL = 20  # in "detail": a batch of NaN rows has one error per value


class ServiceError(Exception):
    """An expected failure with a fixed status, kind and message."""

    def __init__(self, status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.headers = headers


def bad_input(message: str) -> ServiceError:
    return ServiceError(400, "invalid_input", message)


def error_body(kind: str, message: str, detail: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error": message, "kind": kind}
    if detail is not None:
        body["detail"] = detail
    return body


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": what} for status, what in [
        (400, "malformed input"), (404, "unknown model"), (409, "codes of another model"),
        (413, "body over SDLGM_MAX_BODY_BYTES"), (415, "body is not JSON"),
        (422, "the model cannot do this"),
        (503, "inference over SDLGM_REQUEST_TIMEOUT_S, or the model's queue is full (SDLGM_QUEUE_MAX_VECTORS; "
              "kind overloaded, with Retry-After)")]
}

_HTTP_KINDS = {404: "not_found", 405: "method_not_allowed"}


def _where(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "body"


def error_response(metrics: Metrics, status: int, kind: str, message: str,
                   detail: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    """An error answer in the one shape, counted in sdlgm_errors_total."""
    metrics.errors.labels(kind=kind).inc()
    return JSONResponse(error_body(kind, message, detail), status_code=status, headers=headers)


def install_error_handlers(app: FastAPI, metrics: Metrics) -> None:
    """Answer ServiceError, validation errors, Starlette's HTTP errors and bugs in the one shape."""

    def respond(status: int, kind: str, message: str, detail: list[dict[str, Any]] | None = None) -> JSONResponse:
        return error_response(metrics, status, kind, message, detail)

    @app.exception_handler(ServiceError)
    async def service_error(_: Request, exc: ServiceError) -> JSONResponse:
        return error_response(metrics, exc.status, exc.kind, exc.message, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        # No "input" echo: a bad batch can be megabytes.
        errors = exc.errors()
        if errors and errors[0]["type"] == "json_invalid":
            return respond(400, "invalid_input", f"invalid JSON: {errors[0].get('ctx', {}).get('error', '?')}")
        detail = [{"loc": _where(tuple(e["loc"])), "msg": e["msg"], "type": e["type"]}
                  for e in errors[:MAX_DETAIL]]
        listed = "; ".join(f"{d['loc']}: {d['msg']}" for d in detail[:MAX_LISTED_ERRORS])
        more = f" (and {len(errors) - MAX_LISTED_ERRORS} more)" if len(errors) > MAX_LISTED_ERRORS else ""
        return respond(400, "invalid_input", f"invalid request: {listed}{more}", detail)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Starlette's own headers kept: a 405 carries `Allow` (RFC 9110).
        return error_response(metrics, exc.status_code, _HTTP_KINDS.get(exc.status_code, "http"), str(exc.detail),
                              headers=dict(exc.headers) if exc.headers else None)

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return respond(500, "internal", "internal error; the server log has the traceback")

