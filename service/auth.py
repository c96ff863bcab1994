"""Access control: bearer tokens read from files (a Kubernetes or Docker secret mount), checked by a pure
ASGI middleware before any body is read, so an unauthenticated client costs a header lookup and never the
body buffer, the JSON parser or a queue slot.

Without SDLGM_TOKEN_FILE and SDLGM_ADMIN_TOKEN_FILE every path is open but the admin ones, which are off
(403), so that an admin endpoint is never open by default. Each path has one access class (`access_of`):
- open: /healthz, /readyz, /v2/health/live, /v2/health/ready (probes carry no token), the API docs
  (/docs, /redoc, /openapi.json: they say which scheme to use) and the status page's static files (/, /static/).
- metrics: /metrics and /v1/status (the same figures), open unless SDLGM_AUTH_METRICS=true, then as api.
- admin: every path under ADMIN_PREFIX (/admin), whichever router adds it: a token of SDLGM_ADMIN_TOKEN_FILE
  (a token of SDLGM_TOKEN_FILE when no admin file is set). An admin token also passes api paths.
- api: every other path (inference, model listings, the V2 protocol, and unknown paths, so that a client
  without a token learns nothing of the routes): a token of SDLGM_TOKEN_FILE; open when only an admin file
  is set.
A request without a valid token is answered 401 with `WWW-Authenticate: Bearer` (RFC 6750), a valid api
token on an admin path 403. Tokens are compared in constant time (hmac.compare_digest of their SHA-256
digests, against every token, so neither the length nor which token matched shows in the timing), never
taken from the query string (which access logs keep), and never logged or echoed.

A token file holds one token a line; blank lines and lines starting with '#' are skipped (several tokens
let a new one be rolled out before the old is withdrawn). A file that changes is read again, at most every
RELOAD_S seconds, so a rotated secret takes effect without a restart; a file that becomes unreadable or
empty keeps the tokens read last (with a warning in the log).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import time
from pathlib import Path
from typing import Literal

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import error_response
from service.metrics import Metrics
from service.middleware import drain_body, expects_continue

log = logging.getLogger("sdlgm.service")

Access = Literal["open", "metrics", "api", "admin"]
ADMIN_PREFIX = "/admin"
OPEN_PATHS = {"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready", "/openapi.json", "/docs",
              "/docs/oauth2-redirect", "/redoc", "/"}
OPEN_PREFIXES = ("/static/", "/static-offline-docs/")
METRICS_PATHS = {"/metrics", "/v1/status"}
MIN_TOKEN_CHARS = 16
TOKEN_CHARS = re.compile(r"[A-Za-z0-9._~+/=-]+")  # RFC 6750's b64token: what a header can carry unquoted
RELOAD_S = 5.0
REALM = "sdlgm"


def access_of(path: str) -> Access:
    """The access class of a request path."""
    if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
        return "open"
    if path in METRICS_PATHS:
        return "metrics"
    if path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/"):
        return "admin"
    return "api"


def required(path: str, api_tokens: bool, protect_metrics: bool) -> Access:
    """What a path needs with these settings: "open", "api" (any token) or "admin" (an admin token)."""
    access = access_of(path)
    if access == "metrics":
        return "api" if protect_metrics and api_tokens else "open"
    if access == "api" and not api_tokens:
        return "open"
    return access


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def parse_tokens(text: str) -> list[str]:
    """The tokens of a token file's text; ValueError (naming the line, never the token) for a bad one."""
    tokens = []
    for number, line in enumerate(text.splitlines(), 1):
        token = line.strip()
        if not token or token.startswith("#"):
            continue
        if len(token) < MIN_TOKEN_CHARS:
            raise ValueError(f"the token on line {number} has {len(token)} characters; a token needs at least "
                             f"{MIN_TOKEN_CHARS} (e.g. `openssl rand -hex 32`)")
        if not TOKEN_CHARS.fullmatch(token):
            raise ValueError(f"the token on line {number} holds characters a bearer token cannot carry "
                             "(letters, digits and -._~+/= only)")
        tokens.append(token)
    if not tokens:
        raise ValueError("holds no token (one a line; '#' starts a comment)")
    return tokens


def read_tokens(path: Path) -> list[str]:
    """The tokens of a token file; ValueError when it cannot be read or holds none."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot be read: {exc.__class__.__name__}: {exc.strerror or exc}"
                         if isinstance(exc, OSError) else "is not UTF-8 text") from exc
    return parse_tokens(text)


class TokenFile:
    """The digests of a token file's tokens, read again when the file changes (at most every RELOAD_S)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._digests = [_digest(t) for t in read_tokens(path)]
        self._stamp = self._stat()
        self._checked = time.monotonic()

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)  # follows the symlink a Kubernetes secret mount swaps on rotation
        except OSError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < RELOAD_S:
            return
        self._checked = now
        stamp = self._stat()
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            self._digests = [_digest(t) for t in read_tokens(self.path)]
        except ValueError as exc:
            log.warning("token file %s %s; keeping the %d tokens read before", self.path, exc, len(self._digests))
            return
        log.info("token file %s read again: %d tokens", self.path, len(self._digests))

    def holds(self, token: str) -> bool:
        """Whether the token is one of the file's, in time independent of which one and of its length."""
        return self.holds_digest(_digest(token))

    def holds_digest(self, presented: bytes) -> bool:
        """Whether a token of this SHA-256 digest is one of the file's (in time independent of which one)."""
        self._refresh()
        found = False
        for digest in self._digests:
            found |= hmac.compare_digest(presented, digest)
        return found


def bearer_token(headers: Headers) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, None when there is none of that scheme."""
    scheme, _, token = headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class AccessControl:
    """401 for a request without a valid token where its path needs one, 403 for an api token on an admin path,
    and 403 on every admin path when no token file is set (an open service has no admin endpoints)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, api: TokenFile | None, admin: TokenFile | None,
                 protect_metrics: bool, max_body_bytes: int) -> None:
        self.app, self.metrics, self.api, self.protect_metrics = app, metrics, api, protect_metrics
        self.admin = admin or api
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        needs = required(scope["path"], self.api is not None, self.protect_metrics)
        if needs == "open":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        token = bearer_token(headers)
        digest = None if token is None else _digest(token)
        is_api = digest is not None and self.api is not None and self.api.holds_digest(digest)
        is_admin = digest is not None and self.admin is not None and (
            is_api if self.admin is self.api else self.admin.holds_digest(digest))
        if is_admin or (needs == "api" and is_api):
            await self.app(scope, receive, send)
            return
        if self.admin is None:  # no token file at all: needs is "admin"
            status, kind, challenge = 403, "forbidden", None
            message = ("the admin endpoints are off: set SDLGM_ADMIN_TOKEN_FILE (or SDLGM_TOKEN_FILE) to turn them "
                       "on; SIGHUP reloads the bundles without them")
        elif token is None:
            status, kind, challenge = 401, "unauthorized", f'Bearer realm="{REALM}"'
            message = "this endpoint needs a bearer token: send `Authorization: Bearer <token>`"
        elif needs == "admin" and is_api:
            status, kind, challenge = 403, "forbidden", f'Bearer realm="{REALM}", error="insufficient_scope"'
            message = "this token does not grant the admin endpoints (SDLGM_ADMIN_TOKEN_FILE)"
        else:
            status, kind, challenge = 401, "unauthorized", f'Bearer realm="{REALM}", error="invalid_token"'
            message = "the bearer token is not valid"
        if not expects_continue(headers):  # a client still sending its body reads the answer, not a reset
            await drain_body(receive, self.max_body_bytes)
        response = error_response(self.metrics, status, kind, message,
                                  headers={"WWW-Authenticate": challenge} if challenge else None)
        await response(scope, receive, send)
