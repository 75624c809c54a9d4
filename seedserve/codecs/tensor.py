"""Dense tensors: nested JSON lists, ``{"b64", "dtype", "shape"}`` raw
little-endian bytes, or ``{"b64", "mime": "application/x-npy"}`` .npy files.

Limits come first: the element count is checked from the declared or sent
shape (or the base64 length) before any buffer is decoded or copied.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from seedserve.codecs._common import InputBase, float_array
from seedserve.codecs.kind import Form, Kind
from seedserve.errors import InputTooLarge, InvalidInput

__all__ = ["KIND", "NPY_MIME", "TensorInput", "decode_tensor", "nested_zeros", "sample_tensor"]

NPY_MIME = "application/x-npy"


class TensorInput(InputBase):
    """A dense tensor: nested lists, base64 raw bytes or .npy bytes on the wire.

    ``shape`` is the full shape including the batch dimension; ``-1`` marks a
    variable dimension (the first one usually is).
    """

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    kind: Literal["tensor"] = "tensor"
    dtype: Literal["float32", "float64", "float16", "int64", "int32", "int16", "int8", "uint8", "bool"] = "float32"
    shape: list[int] = Field(min_length=1, max_length=8)
    max_elements: int = Field(default=1_000_000, gt=0, le=100_000_000)
    allow_nan: bool = False

    @field_validator("shape")
    @classmethod
    def _dims_are_positive_or_variable(cls, shape: list[int]) -> list[int]:
        bad = [d for d in shape if d == 0 or d < -1]
        if bad:
            raise ValueError(f"dimensions must be positive or -1 (variable), got {bad} in {shape}")
        return shape

    def sample_shape(self, batch_size: int = 1, variable: int = 8) -> tuple[int, ...]:
        """A concrete shape for a sample input: batch first, other -1 dims set to ``variable``."""
        dims = [batch_size if i == 0 and d == -1 else (variable if d == -1 else d) for i, d in enumerate(self.shape)]
        return tuple(dims)

    @property
    def fixed_elements(self) -> int:
        """Elements per item of the variable dims (the product of the fixed dims)."""
        return math.prod(d for d in self.shape if d != -1)


def decode_tensor(value: Any, spec: TensorInput) -> np.ndarray:
    """Decode ``value`` into an array of ``spec.dtype`` whose shape fits ``spec.shape``."""
    if isinstance(value, np.ndarray):  # already decoded by a transport (Open Inference Protocol)
        if value.size > spec.max_elements:
            raise _too_many(spec, value.size)
        if value.dtype.kind not in "biuf":
            raise InvalidInput(f"input {spec.name!r}: expected numbers, got {value.dtype.name}", input=spec.name)
        array = _cast(value, spec)
    elif isinstance(value, (bytes, bytearray, memoryview)):  # a multipart file part: .npy
        array = _decode_npy(bytes(value), spec)
    elif isinstance(value, dict):
        array = _decode_binary(value, spec)
    elif isinstance(value, list):
        array = _decode_nested(value, spec)
    else:
        raise InvalidInput(
            f"input {spec.name!r}: expected nested lists or an object with 'b64', got {type(value).__name__}",
            input=spec.name,
        )
    _check_shape(array.shape, spec)
    if array.dtype.kind == "f" and not spec.allow_nan and not np.isfinite(array).all():
        raise InvalidInput(
            f"input {spec.name!r}: contains NaN, Inf or null (or a number too large for {spec.dtype}); "
            "send finite numbers or set allow_nan in the manifest",
            input=spec.name,
        )
    return array


def _decode_nested(value: list[Any], spec: TensorInput) -> np.ndarray:
    target = np.dtype(spec.dtype)
    if target.kind == "f":
        # One pass in numpy's C loop, as MLServer's NumpyCodec does: numbers
        # given as JSON strings ("1.5") convert, anything else is refused, and
        # null becomes NaN, which the finiteness check then refuses.
        try:
            array = float_array(value, target)
        except (ValueError, TypeError) as exc:
            problem = (
                "nested lists are ragged; every row must have the same length"
                if "inhomogeneous" in str(exc)
                else "expected numbers, got a value that is not one"
            )
            raise InvalidInput(f"input {spec.name!r}: {problem}", input=spec.name) from exc
        if array.size > spec.max_elements:
            raise _too_many(spec, array.size)
        return array
    # Integer and bool targets look at the values first: a cast would
    # silently truncate 1.5 to 1.
    try:
        raw = np.asarray(value)
    except ValueError as exc:  # ragged lists
        raise InvalidInput(
            f"input {spec.name!r}: nested lists are ragged; every row must have the same length",
            input=spec.name,
        ) from exc
    if raw.size > spec.max_elements:
        raise _too_many(spec, raw.size)
    if raw.dtype.kind not in "biuf":
        raise InvalidInput(
            f"input {spec.name!r}: expected numbers, got values of type {raw.dtype.name!r}",
            input=spec.name,
        )
    return _cast(raw, spec)


def _cast(raw: np.ndarray, spec: TensorInput) -> np.ndarray:
    target = np.dtype(spec.dtype)
    if target.kind in "iub" and raw.dtype.kind == "f":
        if not np.isfinite(raw).all() or (raw != np.round(raw)).any():
            raise InvalidInput(
                f"input {spec.name!r}: declared {spec.dtype} but got non-integer numbers",
                input=spec.name,
            )
    if target.kind in "iu" and raw.size and raw.dtype.kind in "iuf":
        info = np.iinfo(target)
        if raw.min() < info.min or raw.max() > info.max:
            raise InvalidInput(
                f"input {spec.name!r}: values outside the range of {spec.dtype} [{info.min}, {info.max}]",
                input=spec.name,
            )
    return raw.astype(target, copy=False)


def _decode_binary(value: dict[str, Any], spec: TensorInput) -> np.ndarray:
    encoded = value.get("b64")
    if not isinstance(encoded, str):
        raise InvalidInput(f"input {spec.name!r}: the object needs a 'b64' string", input=spec.name)
    max_bytes = spec.max_elements * np.dtype(spec.dtype).itemsize + 4096
    if len(encoded) * 3 // 4 > max_bytes:
        raise InputTooLarge(
            f"input {spec.name!r}: {len(encoded) * 3 // 4:,} bytes exceeds the limit of {max_bytes:,} "
            "for max_elements; send fewer elements or raise max_elements in the manifest",
            input=spec.name,
            limit=max_bytes,
        )
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"input {spec.name!r}: 'b64' is not valid base64", input=spec.name) from exc
    if value.get("mime") == NPY_MIME:
        return _decode_npy(data, spec)
    if not isinstance(value.get("shape"), list) and data[:6] == b"\x93NUMPY":
        return _decode_npy(data, spec)
    return _decode_raw(data, value, spec)


def _decode_raw(data: bytes, value: dict[str, Any], spec: TensorInput) -> np.ndarray:
    dtype_name = value.get("dtype", spec.dtype)
    shape = value.get("shape")
    if dtype_name not in _WIRE_DTYPES:
        raise InvalidInput(
            f"input {spec.name!r}: dtype {dtype_name!r} is not one of {sorted(_WIRE_DTYPES)}", input=spec.name
        )
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise InvalidInput(
            f"input {spec.name!r}: raw bytes need 'shape', a list of non-negative integers", input=spec.name
        )
    count = math.prod(shape)
    if count > spec.max_elements:
        raise _too_many(spec, count)
    dtype = np.dtype(dtype_name).newbyteorder("<")
    if count * dtype.itemsize != len(data):
        raise InvalidInput(
            f"input {spec.name!r}: shape {shape} of {dtype_name} needs {count * dtype.itemsize} bytes, got {len(data)}",
            input=spec.name,
        )
    raw = np.frombuffer(data, dtype=dtype).reshape(shape)
    return _cast(raw.astype(dtype.newbyteorder("="), copy=False), spec)


def _decode_npy(data: bytes, spec: TensorInput) -> np.ndarray:
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        # Read only the header: the shape is checked against the limit first.
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
    except (ValueError, OSError) as exc:
        raise InvalidInput(f"input {spec.name!r}: not a valid .npy file", input=spec.name) from exc
    if dtype.hasobject or dtype.kind not in "biuf":
        raise InvalidInput(f"input {spec.name!r}: .npy dtype {dtype} is not numeric", input=spec.name)
    count = math.prod(shape)
    if count > spec.max_elements:
        raise _too_many(spec, count)
    stream.seek(0)
    try:
        raw = np.load(stream, allow_pickle=False)
    except ValueError as exc:
        raise InvalidInput(f"input {spec.name!r}: .npy data is truncated or corrupt", input=spec.name) from exc
    return _cast(raw, spec)


def _check_shape(shape: tuple[int, ...], spec: TensorInput) -> None:
    declared = spec.shape
    fits = len(shape) == len(declared) and all(d == -1 or d == s for d, s in zip(declared, shape, strict=True))
    if not fits:
        raise InvalidInput(
            f"input {spec.name!r}: shape {list(shape)} does not match the declared {declared} (-1 = any size)",
            input=spec.name,
            expected=declared,
            got=list(shape),
        )


def _too_many(spec: TensorInput, count: int) -> InputTooLarge:
    return InputTooLarge(
        f"input {spec.name!r}: {count:,} elements exceeds the limit of {spec.max_elements:,}; "
        "send fewer elements or raise max_elements in the manifest",
        input=spec.name,
        limit=spec.max_elements,
        got=count,
    )


_WIRE_DTYPES = {"float32", "float64", "float16", "int64", "int32", "int16", "int8", "uint8", "bool"}


def sample_tensor(spec: TensorInput, batch: int = 1) -> np.ndarray:
    return np.zeros(spec.sample_shape(batch), dtype=spec.dtype)


def nested_zeros(shape: list[int], most: int = 64) -> Any:
    """Nested lists of zeros of ``shape`` (-1 taken as 1, each dimension at most ``most``): an example value."""
    value: Any = 0.0
    for d in reversed([1 if d == -1 else d for d in shape]):
        value = [value] * min(d, most)
    return value


KIND = Kind(
    name="tensor", spec=TensorInput, decoder="seedserve.codecs.tensor:decode_tensor",
    sampler="seedserve.codecs.tensor:sample_tensor", wire="tensor",
    doc="nested numbers (or {b64, dtype, shape})", form=Form("json", example=lambda spec: nested_zeros(spec.shape)),
    mimes={".npy": NPY_MIME},
)
