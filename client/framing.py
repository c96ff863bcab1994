"""The bodies of the native binary endpoints (docs/serving.md, "Native binary"; the server's side is
service/binary.py): rows are B * D little-endian float32 values, row after row; codes are records one after
another, each a little-endian u16 length then the code's bytes (formats `v1` and `range`), or bare
fixed-length records (format `enum`)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
LENGTH = np.dtype("<u2")
FIXED_LENGTH = {"enum"}


class FramingError(ValueError):
    """A body that is not what its headers say it holds."""


def rows_body(x: npt.ArrayLike) -> bytes:
    """The body of a batch: one vector (D,) or rows (B, D), as little-endian float32."""
    rows = np.asarray(x, dtype="<f4")
    if rows.ndim == 1:
        rows = rows[None, :]
    if rows.ndim != 2 or rows.shape[0] == 0 or rows.shape[1] == 0:
        raise ValueError(f"expected one vector (D,) or a batch (B, D) of vectors, got shape {np.shape(x)}")
    return np.ascontiguousarray(rows).tobytes()


def rows_of(body: bytes, count: int) -> F32:
    """(count, D) float32 rows of a body of count whole rows."""
    if count <= 0 or len(body) % (4 * count):
        raise FramingError(f"{len(body)} bytes are not {count} rows of float32 values")
    return np.frombuffer(body, dtype="<f4").reshape(count, -1).astype(np.float32)


def frame(fmt: str, blobs: tuple[bytes, ...]) -> bytes:
    """The records of these codes in format fmt."""
    if fmt in FIXED_LENGTH:
        return b"".join(blobs)
    for i, blob in enumerate(blobs):
        if len(blob) > np.iinfo(LENGTH).max:
            raise FramingError(f"code {i} has {len(blob)} bytes, more than a u16 length can frame")
    return b"".join(len(blob).to_bytes(2, "little") + blob for blob in blobs)


def unframe(fmt: str, body: bytes, count: int) -> tuple[bytes, ...]:
    """The count codes of a body of records in format fmt."""
    if fmt in FIXED_LENGTH:
        if count <= 0 or len(body) % count:
            raise FramingError(f"{len(body)} bytes are not {count} {fmt} codes of one length")
        size = len(body) // count
        return tuple(body[i:i + size] for i in range(0, len(body), size))
    blobs: list[bytes] = []
    at = 0
    while at < len(body):
        if at + LENGTH.itemsize > len(body):
            raise FramingError(f"code {len(blobs)} is cut off in its length (at byte {at} of {len(body)})")
        n = int.from_bytes(body[at:at + LENGTH.itemsize], "little")
        at += LENGTH.itemsize
        if at + n > len(body):
            raise FramingError(f"code {len(blobs)} declares {n} bytes but {len(body) - at} remain")
        blobs.append(body[at:at + n])
        at += n
    if len(blobs) != count:
        raise FramingError(f"the body holds {len(blobs)} codes, not {count}")
    return tuple(blobs)
