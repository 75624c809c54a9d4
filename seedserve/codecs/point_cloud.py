"""Point clouds: ``N`` points of ``(x, y, z)`` -> an ``[N, 3]`` array of the
declared float dtype.

A tensor wire form: nested lists ``[[x, y, z], ...]`` in JSON or in a
multipart part; ``{"b64", "dtype", "shape"}`` (raw little-endian bytes, what
the SDK sends for a large array); a ``.npy`` file (a multipart file part, or
``{"b64", "mime": "application/x-npy"}``); or an Open Inference Protocol
numeric tensor of shape ``[N, 3]``. The number of points is checked against
``max_points`` before anything is converted: from the list's length, the
given shape, the ``.npy`` header, or the length of the base64.

Points are the batch items: queries merge by concatenating their points, so
a per-point model (segmentation) batches, and a model that answers once per
cloud is served one query per call (the replica's sample check finds that
its outputs do not split per item).
"""

from __future__ import annotations

import io
from typing import Any, Literal

import numpy as np
from pydantic import Field

from seedserve.codecs._common import InputBase
from seedserve.codecs.kind import Form, Kind
from seedserve.codecs.tensor import NPY_MIME, TensorInput, decode_tensor
from seedserve.errors import InputTooLarge, InvalidInput

__all__ = ["KIND", "PointCloudInput", "decode_point_cloud", "sample_point_cloud"]


class PointCloudInput(InputBase):
    """A point cloud per query; the model gets ``[N, 3]`` (x, y, z per point)."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    kind: Literal["point_cloud"] = "point_cloud"
    dtype: Literal["float32", "float64", "float16"] = "float32"
    max_points: int = Field(default=1_000_000, gt=0, le=50_000_000)
    allow_nan: bool = False

    @property
    def shape(self) -> list[int]:
        """The array's shape as a tensor form declares it."""
        return [-1, 3]


def decode_point_cloud(value: Any, spec: PointCloudInput) -> np.ndarray:
    """``[[x, y, z], ...]`` (or its binary forms) -> ``[N, 3]`` of ``spec.dtype``."""
    points = _claimed_points(value, spec)
    if points > spec.max_points:
        raise InputTooLarge(
            f"input {spec.name!r}: {points:,} points exceeds the limit of {spec.max_points:,}; "
            "downsample or raise max_points in the manifest",
            input=spec.name, limit=spec.max_points, got=points,
        )
    # Within the limit, the tensor codec converts and checks the rest: numbers, the shape [N, 3], NaN.
    as_tensor = TensorInput(name=spec.name, dtype=spec.dtype, shape=spec.shape, max_elements=3 * spec.max_points,
                            allow_nan=spec.allow_nan)
    return decode_tensor(value, as_tensor)


def _claimed_points(value: Any, spec: PointCloudInput) -> int:
    """How many points ``value`` holds, read without converting it (0 when its form is wrong:
    the tensor codec then says what is)."""
    if isinstance(value, np.ndarray):
        return int(value.shape[0]) if value.ndim else 1
    if isinstance(value, list):
        return len(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _npy_points(bytes(value), spec.name)
    if isinstance(value, dict):
        shape = value.get("shape")
        if isinstance(shape, list) and shape and isinstance(shape[0], int):
            return shape[0]
        encoded = value.get("b64")
        if isinstance(encoded, str):
            return len(encoded) * 3 // 4 // (3 * np.dtype(spec.dtype).itemsize)
    return 0


def _npy_points(data: bytes, name: str) -> int:
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape = header(stream)[0]
    except (ValueError, OSError) as exc:
        raise InvalidInput(f"input {name!r}: not a valid .npy file", input=name) from exc
    return int(shape[0]) if shape else 1


def sample_point_cloud(spec: PointCloudInput, batch: int = 1) -> np.ndarray:
    return np.zeros((batch, 3), dtype=spec.dtype)


def _example(spec: PointCloudInput) -> list[list[float]]:
    return [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]


KIND = Kind(
    name="point_cloud", spec=PointCloudInput, decoder="seedserve.codecs.point_cloud:decode_point_cloud",
    sampler="seedserve.codecs.point_cloud:sample_point_cloud", wire="tensor",
    doc="[[x, y, z], ...] (or {b64, dtype, shape}, or a .npy file)", form=Form("json", example=_example),
    mimes={".npy": NPY_MIME},
)
