"""Encoders: natural Python values to wire values (the codecs' inverse)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["encode_value", "encode_inputs"]


def encode_value(value: Any) -> Any:
    """A JSON-ready wire value for ``value`` (numpy arrays and torch tensors become nested lists)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        return value.detach().cpu().numpy().tolist()
    if isinstance(value, (np.generic,)):
        return value.item()
    return value


def encode_inputs(inputs: dict[str, Any]) -> dict[str, Any]:
    return {name: encode_value(value) for name, value in inputs.items()}
