"""The manifest a model declares: its name, inputs, outputs and serving wishes.

Validated with pydantic; every error names the field path and the value. This
is the shared model of the registry: the manager validates it, the master and
the model servers read it back from the stored document.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "DTYPES",
    "TensorInput",
    "InputSpec",
    "OutputSpec",
    "Scaling",
    "Batching",
    "Manifest",
]

#: dtypes a tensor input may declare, mapped to numpy's names.
DTYPES = ("float32", "float64", "float16", "int64", "int32", "int16", "int8", "uint8", "bool")

MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
INPUT_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TensorInput(_Strict):
    """A dense tensor: nested lists, base64 raw bytes or .npy bytes on the wire.

    ``shape`` is the full shape including the batch dimension; ``-1`` marks a
    variable dimension (the first one usually is).
    """

    name: str = Field(pattern=INPUT_NAME_PATTERN)
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


#: Union of the input kinds; one kind so far, more join as codecs land.
InputSpec = TensorInput


class OutputSpec(_Strict):
    """A named output of the model, in the order the model returns them."""

    name: str = Field(pattern=INPUT_NAME_PATTERN)


class Scaling(_Strict):
    """Autoscaling wishes; Serve's autoscaling_config is built from these."""

    min_replicas: int = Field(default=1, ge=0, le=64)
    max_replicas: int = Field(default=2, ge=1, le=64)
    target_ongoing_requests: float = Field(default=4.0, gt=0)
    num_cpus: float = Field(default=0.25, gt=0, le=64)

    @model_validator(mode="after")
    def _min_not_above_max(self) -> "Scaling":
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) exceeds max_replicas ({self.max_replicas})")
        return self


class Batching(_Strict):
    """Dynamic batching: requests are merged along the first dimension."""

    max_batch_size: int = Field(default=1, ge=1, le=1024)
    max_wait_ms: float = Field(default=2.0, ge=0, le=1000)


class Manifest(_Strict):
    """What a model is: name, inputs, outputs and how to serve it."""

    name: str = Field(pattern=MODEL_NAME_PATTERN)
    description: str = Field(default="", max_length=2000)
    inputs: list[InputSpec] = Field(min_length=1, max_length=64)
    outputs: list[OutputSpec] = Field(min_length=1, max_length=64)
    scaling: Scaling = Scaling()
    batching: Batching = Batching()
    max_body_bytes: int = Field(default=16 * 2**20, gt=0, le=512 * 2**20)

    @field_validator("inputs", "outputs")
    @classmethod
    def _names_are_unique(cls, items: list[TensorInput] | list[OutputSpec]) -> list[TensorInput] | list[OutputSpec]:
        names = [item.name for item in items]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"names must be unique, repeated: {duplicates}")
        return items

    def input(self, name: str) -> TensorInput:
        """The declared input called ``name`` (KeyError if none)."""
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise KeyError(name)
