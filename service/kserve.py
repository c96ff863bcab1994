"""The KServe V2 / Open Inference Protocol over HTTP on the wire: request and response bodies, JSON tensors
and the binary tensor extension (docs/serving.md, "KServe V2").

A request body is a JSON header, optionally followed by the raw bytes of binary inputs; the
Inference-Header-Content-Length header then says how long the JSON part is, and each binary input says its
size in `parameters.binary_data_size`, in the order of `inputs`. Fixed-size types travel little-endian,
BYTES as a u32 length then the bytes per element; in JSON `data`, BYTES elements are base64 strings (our
codes are not text). Responses put outputs in binary when the output asks (`parameters.binary_data`) or
the request does (`parameters.binary_data_output`), JSON otherwise. Everything malformed is a 400.
"""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
import pydantic_core
from fastapi import Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from service.binary import OCTET_STREAM, length_prefixed
from service.errors import bad_input
from service.fastjson import check_values
from service.schemas import NonNegativeInt

HEADER_LENGTH = "Inference-Header-Content-Length"
TRITON_TYPES = {"BYTES": "STRING"}  # Triton's model configuration names the V2 datatype BYTES TYPE_STRING
DTYPES: dict[str, np.dtype[Any]] = {"BOOL": np.dtype("?"), "INT32": np.dtype("<i4"), "INT64": np.dtype("<i8"),
                                    "FP32": np.dtype("<f4")}
JSON_KINDS = {"BOOL": "b", "INT32": "iu", "INT64": "iu", "FP32": "iuf"}  # numpy kinds JSON data may parse to
BYTES_LENGTH = np.dtype("<u4")
Array = npt.NDArray[Any]
Name = Annotated[str, Field(min_length=1, max_length=64)]


@dataclass(frozen=True)
class TensorSpec:
    """A declared input or output: its name, datatype and shape (-1: any size)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    def config(self) -> dict[str, Any]:
        """The tensor as Triton's model configuration declares it for a model that batches: `data_type`
        TYPE_<datatype> (BYTES is TYPE_STRING) and `dims` without the batch dimension; a tensor of one value a
        row has dims [1] reshaped to [] (Triton's convention), as clients then send shape [batch]."""
        dims = list(self.shape[1:])
        entry: dict[str, Any] = {"name": self.name, "data_type": "TYPE_" + TRITON_TYPES.get(self.datatype,
                                                                                           self.datatype),
                                 "dims": dims or [1]}
        if not dims:
            entry["reshape"] = {"shape": []}
        return entry


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Parameters(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)  # the protocol lets clients add their own


class InputParameters(_Parameters):
    binary_data_size: NonNegativeInt | None = None


class InferInput(_Body):
    name: Name
    shape: list[NonNegativeInt] = Field(max_length=8)
    datatype: str = Field(max_length=16)
    parameters: InputParameters = InputParameters()
    data: list[Any] | None = None


class OutputParameters(_Parameters):
    binary_data: StrictBool | None = None


class RequestedOutput(_Body):
    name: Name
    parameters: OutputParameters = OutputParameters()


class RequestParameters(_Parameters):
    binary_data_output: StrictBool = False
    fingerprint: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")


class InferRequest(_Body):
    id: str | None = Field(None, max_length=256)
    parameters: RequestParameters = RequestParameters()
    inputs: list[InferInput] = Field(min_length=1)
    outputs: list[RequestedOutput] | None = None


def parse_request(body: bytes, header_length: str | None,
                  value_cap: int | None = None) -> tuple[InferRequest, list[bytes | None]]:
    """The request's JSON header and each input's binary data (None for a JSON input); a header of more
    than value_cap JSON values is refused unparsed (service.fastjson.check_values)."""
    head, tail = body, b""
    if header_length is not None:
        if not (header_length.strip().isascii() and header_length.strip().isdigit()):  # not '²', which int() refuses
            raise bad_input(f"{HEADER_LENGTH} must be a number of bytes, not {header_length[:32]!r}")
        n = int(header_length)
        if n > len(body):
            raise bad_input(f"{HEADER_LENGTH} is {n} but the body has only {len(body)} bytes")
        head, tail = body[:n], body[n:]
    check_values(head, value_cap)
    try:
        request = InferRequest.model_validate_json(head)
    except ValidationError as exc:  # answered by the shared handler, as FastAPI's own body errors are
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from exc
    sizes = [i.parameters.binary_data_size for i in request.inputs]
    declared = sum(s for s in sizes if s is not None)
    if declared != len(tail):
        raise bad_input(f"the inputs' binary_data_size add up to {declared} bytes, but {len(tail)} bytes follow "
                        f"the JSON header ({HEADER_LENGTH}: {header_length or 'absent'})")
    raw: list[bytes | None] = []
    at = 0
    for size in sizes:
        raw.append(None if size is None else tail[at:at + size])
        at += size or 0
    return request, raw


def _bytes_elements(raw: bytes, n: int, name: str) -> Array:
    elements, at = length_prefixed(raw, BYTES_LENGTH, lambda i: f"input {name!r}: BYTES element {i}", n)
    if len(elements) < n:
        raise bad_input(f"input {name!r}: its shape holds {n} BYTES elements but its data ends after {len(elements)}")
    if at != len(raw):
        raise bad_input(f"input {name!r}: {len(raw) - at} bytes are left after its {n} BYTES elements")
    out = np.empty(n, dtype=object)
    out[:] = elements
    return out


def _json_bytes(data: list[Any], name: str) -> Array:
    out = np.empty(len(data), dtype=object)
    for i, item in enumerate(data):
        if not isinstance(item, str):
            raise bad_input(f"input {name!r}: BYTES data in JSON are base64 strings; element {i} is not a string")
        try:
            out[i] = base64.b64decode(item, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise bad_input(f"input {name!r}: element {i} is not valid base64: {exc}") from exc
    return out


def _json_numbers(data: list[Any], datatype: str, name: str) -> Array:
    try:
        values = np.asarray(data).reshape(-1)
    except ValueError as exc:  # ragged nesting
        raise bad_input(f"input {name!r}: data is not a regular array: {exc}") from exc
    if values.size and values.dtype.kind not in JSON_KINDS[datatype]:
        raise bad_input(f"input {name!r}: data must be {datatype} values, not {type(values[0].item()).__name__}")
    if datatype in ("INT32", "INT64") and values.size:
        info = np.iinfo(DTYPES[datatype])
        if values.min() < info.min or values.max() > info.max:
            raise bad_input(f"input {name!r}: values must fit in {datatype}")
    return values.astype(DTYPES[datatype])


def tensor(inp: InferInput, raw: bytes | None, spec: TensorSpec, model: str) -> Array:
    """The input as a numpy array of its spec's datatype and of its declared shape, checked against spec
    (FP32 values finite)."""
    values = _values(inp, raw, spec, model)
    if spec.datatype == "FP32" and not np.isfinite(values).all():
        raise bad_input(f"input {inp.name!r} holds NaN or infinity; values must be finite")
    return values


def _values(inp: InferInput, raw: bytes | None, spec: TensorSpec, model: str) -> Array:
    if inp.datatype != spec.datatype:
        raise bad_input(f"input {inp.name!r} has datatype {inp.datatype}; model {model!r} takes {spec.datatype}")
    if len(inp.shape) != len(spec.shape) or any(s not in (-1, v) for s, v in zip(spec.shape, inp.shape, strict=True)):
        raise bad_input(f"input {inp.name!r} has shape {inp.shape}; model {model!r} takes {list(spec.shape)}")
    n = math.prod(inp.shape)
    if raw is not None and inp.data is not None:
        raise bad_input(f"input {inp.name!r} has both 'data' and parameters.binary_data_size; give one")
    if raw is None and inp.data is None:
        raise bad_input(f"input {inp.name!r} has neither 'data' nor parameters.binary_data_size")
    if raw is not None:
        if spec.datatype == "BYTES":
            return _bytes_elements(raw, n, inp.name).reshape(inp.shape)
        expected = n * DTYPES[spec.datatype].itemsize
        if len(raw) != expected:
            raise bad_input(f"input {inp.name!r} of shape {inp.shape} is {expected} bytes of {spec.datatype}, but "
                            f"its binary_data_size is {len(raw)}")
        return np.frombuffer(raw, dtype=DTYPES[spec.datatype]).reshape(inp.shape)
    data = inp.data or []
    values = _json_bytes(data, inp.name) if spec.datatype == "BYTES" else _json_numbers(data, spec.datatype, inp.name)
    if values.size != n:
        raise bad_input(f"input {inp.name!r} has shape {inp.shape}, so {n} values, but its data holds {values.size}")
    return values.reshape(inp.shape)


def _binary(array: Array, datatype: str) -> bytes:
    if datatype == "BYTES":
        items = array.reshape(-1).tolist()
        lengths = np.fromiter(map(len, items), dtype=BYTES_LENGTH, count=len(items)).tobytes()
        return b"".join(p for i, item in enumerate(items) for p in (lengths[4 * i:4 * i + 4], item))
    return np.ascontiguousarray(array, dtype=DTYPES[datatype]).tobytes()


def _json_data(array: Array, datatype: str) -> list[Any]:
    flat = array.reshape(-1)
    if datatype == "BYTES":
        return [base64.b64encode(b).decode("ascii") for b in flat.tolist()]
    return list(flat.tolist())


def response(model: str, version: str, request: InferRequest, outputs: dict[str, tuple[str, Array]],
             parameters: dict[str, Any]) -> Response:
    """The inference response: the requested outputs (all, in their declared order, when none is named),
    binary where asked, with the JSON header's length in Inference-Header-Content-Length."""
    wanted = request.outputs or [RequestedOutput(name=n) for n in outputs]
    header: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for out in wanted:
        datatype, array = outputs[out.name]
        entry: dict[str, Any] = {"name": out.name, "datatype": datatype, "shape": list(array.shape)}
        as_binary = out.parameters.binary_data
        if as_binary if as_binary is not None else request.parameters.binary_data_output:
            blobs.append(_binary(array, datatype))
            entry["parameters"] = {"binary_data_size": len(blobs[-1])}
        else:
            entry["data"] = _json_data(array, datatype)
        header.append(entry)
    body: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": header}
    if request.id is not None:
        body["id"] = request.id
    if parameters:
        body["parameters"] = parameters
    head = pydantic_core.to_json(body)
    if not blobs:
        return Response(head, media_type="application/json")
    return Response(b"".join([head, *blobs]), media_type=OCTET_STREAM, headers={HEADER_LENGTH: str(len(head))})
