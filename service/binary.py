"""Binary bodies of the native endpoints (docs/serving.md, "Native binary"): float32 rows and framed codes.

Rows: B * D little-endian float32 values, row after row (B * D * 4 bytes, D from the model).
Codes: the codes one after another in the request's `?format=`; with the fixed-length `enum` format each
record is the code's enum_bytes and nothing else, with `v1` and `range` each record is a little-endian
u16 length and then that many bytes of the code. Parsing goes through `np.frombuffer`, never a Python
loop per value (a loop per code only where the records have variable length).

`OctetStreamRoute` is the route class of the binary twin of a JSON endpoint: same path and method, it
matches only requests whose Content-Type is application/octet-stream, so the JSON route keeps the rest.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any, Literal

import numpy as np
from fastapi.routing import APIRoute
from starlette.datastructures import Headers
from starlette.routing import Match
from starlette.types import Scope

from bundle import formats
from bundle.codes import CodeFormatError, IntArray
from bundle.formats import CodeSpace, EntropyModel, Format
from bundle.runtime import F32
from service.errors import bad_input

OCTET_STREAM = "application/octet-stream"
LENGTH = np.dtype("<u2")
FINGERPRINT_HEADER = "X-SDLGM-Fingerprint"


def media_type(headers: Headers) -> str:
    return headers.get("content-type", "").split(";")[0].strip().lower()


def wants_binary(headers: Headers) -> bool:
    """Whether the request's Accept names application/octet-stream."""
    return any(part.split(";")[0].strip().lower() == OCTET_STREAM for part in headers.get("accept", "").split(","))


class OctetStreamRoute(APIRoute):
    """A route that matches only application/octet-stream bodies (the binary twin of a JSON route)."""

    def matches(self, scope: Scope) -> tuple[Match, MutableMapping[str, Any]]:
        match, child = super().matches(scope)
        if match is not Match.NONE and media_type(Headers(scope=scope)) != OCTET_STREAM:
            return Match.NONE, {}
        return match, child


def rows(body: bytes, D: int, max_batch: int) -> F32:
    """(B, D) float32 matrix from a body of B * D little-endian float32 values, finite and B in range."""
    width = 4 * D
    if len(body) % width:
        raise bad_input(f"binary body of {len(body)} bytes is not whole rows of D = {D} float32 values "
                        f"({width} bytes a row)")
    n = len(body) // width
    if n == 0:
        raise bad_input("empty batch: send at least one vector")
    if n > max_batch:
        raise bad_input(f"batch of {n} vectors is over the maximum of {max_batch} (SDLGM_MAX_BATCH)")
    x = np.frombuffer(body, dtype="<f4").reshape(n, D)
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        raise bad_input(f"vector {int(np.argmin(finite))} holds NaN or infinity; values must be finite")
    return x.astype(np.float32, copy=False)


def frame(fmt: Format, data: bytes, offsets: IntArray) -> bytes:
    """The records of the messages of formats.pack_stream (data, (B + 1,) offsets): bare for enum (fixed
    length), else each after its u16 length, placed with numpy rather than a loop over the codes."""
    if fmt == "enum":
        return data
    sizes = np.diff(offsets)
    if len(sizes) and sizes.max() > np.iinfo(LENGTH).max:
        raise ValueError(f"a code of {int(sizes.max())} bytes does not fit a u16 record length")
    out = np.empty(len(data) + LENGTH.itemsize * len(sizes), dtype=np.uint8)
    heads = offsets[:-1] + LENGTH.itemsize * np.arange(len(sizes))  # where each record's length goes
    out[heads] = sizes & 0xFF
    out[heads + 1] = sizes >> 8
    code = np.repeat(np.arange(len(sizes)), sizes)  # the record of each byte of data
    out[np.arange(len(data)) + LENGTH.itemsize * (code + 1)] = np.frombuffer(data, dtype=np.uint8)
    return out.tobytes()


def length_prefixed(body: bytes, width: np.dtype[Any], label: Callable[[int], str],
                    most: int) -> tuple[list[bytes], int]:
    """Up to `most` records from the start of body, each a little-endian length of `width` then that many
    bytes, stopping at the body's end: (the records, the bytes they take). A record cut off is a 400 naming
    it by label(i). The one walker of the native framing (LENGTH) and V2's BYTES elements (service.kserve)."""
    records: list[bytes] = []
    at, size = 0, width.itemsize
    order: Literal["little", "big"] = "big" if width.byteorder == ">" else "little"
    while at < len(body) and len(records) < most:
        if at + size > len(body):
            raise bad_input(f"{label(len(records))} is cut off in its length (at byte {at} of {len(body)})")
        n = int.from_bytes(body[at:at + size], order)  # per record: cheaper than a numpy view
        at += size
        if at + n > len(body):
            raise bad_input(f"{label(len(records))} declares {n} bytes but {len(body) - at} remain")
        records.append(body[at:at + n])
        at += n
    return records, at


def unframe(fmt: Format, body: bytes, space: CodeSpace, max_batch: int) -> list[bytes]:
    """The records of a framed body, refused (400) when they do not fill it exactly or are too many."""
    if fmt == "enum":
        size = space.enum_bytes
        if len(body) % size:
            raise bad_input(f"binary body of {len(body)} bytes is not whole enum codes of {size} bytes")
        blobs = [body[i:i + size] for i in range(0, len(body), size)]
    else:
        blobs, _ = length_prefixed(body, LENGTH, lambda i: f"code {i}", max_batch + 1)
    if not blobs:
        raise bad_input("empty batch: send at least one code")
    if len(blobs) > max_batch:
        raise bad_input(f"batch of more than {max_batch} codes is over the maximum (SDLGM_MAX_BATCH)")
    return blobs


def counts_of(fmt: Format, blobs: list[bytes], space: CodeSpace, entropy: EntropyModel | None) -> F32:
    """(B, K) float32 counts of the codes, each validated (400 naming the first bad one)."""
    z = np.zeros((len(blobs), space.K), dtype=np.float32)
    for i, blob in enumerate(blobs):
        try:
            z[i] = formats.unpack(fmt, blob, space, entropy)
        except CodeFormatError as exc:
            raise bad_input(f"codes[{i}] is not a code of this model: {exc}") from exc
    return z

