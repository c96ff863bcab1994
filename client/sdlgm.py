"""The client: `Client.encode` sends float32 rows to POST /encode and returns `Codes` (the codes' bytes with
the model and fingerprint that made them); `Client.decode` sends them to POST /decode with that
fingerprint and returns the reconstructions. Errors are the service's `{"error", "kind"}` as
`ServiceError`; codes of another model (409) as `FingerprintMismatch`. A 503 is retried after the wait its
`Retry-After` asks for, at most `Retry.attempts` tries and never a wait over `Retry.max_wait_s`.
"""

from __future__ import annotations

import email.utils
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType

import httpx
import numpy.typing as npt

from client import framing
from client.framing import F32

OCTET_STREAM = "application/octet-stream"
FINGERPRINT_HEADER = "X-SDLGM-Fingerprint"


class ServiceError(Exception):
    """An error answer of the service: its status, kind (e.g. "invalid_input") and message."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(f"{status} {kind}: {message}")
        self.status = status
        self.kind = kind
        self.message = message


class FingerprintMismatch(ServiceError):
    """409: the codes were made by another model than the one asked to decode them."""


class Unavailable(ServiceError):
    """503 after the retries allowed, or with a Retry-After longer than the client will wait."""


@dataclass(frozen=True)
class Retry:
    """How 503 answers are retried: at most `attempts` tries in all, each after the wait the answer's
    Retry-After asks for (seconds or an HTTP date), or `default_wait_s` doubled at each try when it names
    none. A Retry-After over `max_wait_s` is not waited for: Unavailable at once."""

    attempts: int = 3
    default_wait_s: float = 0.5
    max_wait_s: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.default_wait_s < 0 or self.max_wait_s < 0:
            raise ValueError(f"{self}: attempts must be >= 1 and the waits >= 0")


def retry_after_s(value: str | None, now: datetime | None = None) -> float | None:
    """The seconds a Retry-After header asks to wait (RFC 9110: seconds, or an HTTP date), None when absent
    or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@dataclass(frozen=True)
class Codes:
    """Codes as the service sent them: the bytes of each code in `format`, and the `model` and
    `fingerprint` that made them (decode sends the fingerprint back). `framed()` is the wire form to
    store; `Codes.of_framed` reads it back."""

    model: str
    fingerprint: str
    format: str
    blobs: tuple[bytes, ...]

    def __len__(self) -> int:
        return len(self.blobs)

    def framed(self) -> bytes:
        return framing.frame(self.format, self.blobs)

    @classmethod
    def of_framed(cls, body: bytes, count: int, *, model: str, fingerprint: str, format: str = "v1") -> Codes:
        return cls(model, fingerprint, format, framing.unframe(format, body, count))


class Client:
    """A connection to one sdlgm service. `model` is the default model of encode (the service's default
    when None); decode goes to the model that made the codes unless told otherwise. `token` is sent as
    `Authorization: Bearer` (a service with SDLGM_TOKEN_FILE answers 401 without it); `verify` is httpx's:
    True (the system's CAs), a CA bundle's path (a self-signed service certificate), or an SSLContext."""

    def __init__(self, base_url: str, *, model: str | None = None, timeout_s: float = 30.0,
                 retry: Retry | None = None, sleep: Callable[[float], None] = time.sleep, token: str | None = None,
                 verify: bool | str | ssl.SSLContext = True) -> None:
        self.model = model
        self.retry = retry or Retry()
        self._sleep = sleep
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if isinstance(verify, str):
            verify = ssl.create_default_context(cafile=verify)
        self._http = httpx.Client(base_url=base_url, timeout=timeout_s, headers=headers, verify=verify)

    def __repr__(self) -> str:  # never the token
        return f"Client({str(self._http.base_url)!r}, model={self.model!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def encode(self, x: npt.ArrayLike, *, model: str | None = None, format: str = "v1", stochastic: bool = False,
               seed: int | None = None) -> Codes:
        """The codes of one vector (D,) or a batch (B, D), in `format` (v1, enum or range); with
        `stochastic` a sample from the posterior (reproducible with `seed`) instead of its mode."""
        params: dict[str, str] = {"format": format}
        if model or self.model:
            params["model"] = str(model or self.model)
        if stochastic:
            params["stochastic"] = "true"
            if seed is not None:
                params["seed"] = str(seed)
        answer = self._post("/encode", framing.rows_body(x), params, {})
        count = int(answer.headers["X-SDLGM-Count"])
        return Codes(model=answer.headers["X-SDLGM-Model"], fingerprint=answer.headers[FINGERPRINT_HEADER],
                     format=answer.headers["X-SDLGM-Format"],
                     blobs=framing.unframe(answer.headers["X-SDLGM-Format"], answer.content, count))

    def decode(self, codes: Codes, *, model: str | None = None) -> F32:
        """(B, D) float32 reconstructions of the codes, by `model` (default: the model that made them).
        Raises FingerprintMismatch when that model did not make them."""
        params = {"format": codes.format, "model": model or codes.model}
        answer = self._post("/decode", codes.framed(), params, {FINGERPRINT_HEADER: codes.fingerprint})
        return framing.rows_of(answer.content, int(answer.headers["X-SDLGM-Count"]))

    def _post(self, path: str, body: bytes, params: dict[str, str], headers: dict[str, str]) -> httpx.Response:
        headers = {"Content-Type": OCTET_STREAM, "Accept": OCTET_STREAM, **headers}
        for attempt in range(1, self.retry.attempts + 1):
            answer = self._http.post(path, content=body, params=params, headers=headers)
            if answer.status_code != 503:
                break
            wait = retry_after_s(answer.headers.get("Retry-After"))
            if wait is None:
                wait = self.retry.default_wait_s * 2 ** (attempt - 1)
            if attempt == self.retry.attempts or wait > self.retry.max_wait_s:
                why = (f"asks to retry after {wait:g} s, over this client's limit of {self.retry.max_wait_s:g} s"
                       if wait > self.retry.max_wait_s else f"still unavailable after {attempt} tries")
                raise _error(answer, Unavailable, f" ({why})")
            self._sleep(wait)
        if answer.status_code == 409:
            raise _error(answer, FingerprintMismatch)
        if answer.is_error:
            raise _error(answer, ServiceError)
        return answer


def _error(answer: httpx.Response, cls: type[ServiceError], note: str = "") -> ServiceError:
    """The service's {"error", "kind"} answer as an exception (its text when it is not that shape)."""
    try:
        body = answer.json()
        kind, message = str(body["kind"]), str(body["error"])
    except (ValueError, KeyError, TypeError):
        kind, message = "http", answer.text[:500] or answer.reason_phrase
    return cls(answer.status_code, kind, message + note)
