"""Outputs to JSON: arrays as nested lists, and for classifiers that declare
labels, the top-k labels with softmax scores per row."""

from __future__ import annotations

from typing import Any

import numpy as np

from seedserve.codecs.schema import Manifest

__all__ = ["encode_outputs"]


def encode_outputs(manifest: Manifest, outputs: dict[str, np.ndarray]) -> dict[str, Any]:
    """``{name: nested lists}``; an output with ``labels`` also gets
    ``{name}_top_k``: per row, the ``top_k`` best ``{"label", "score"}``."""
    encoded: dict[str, Any] = {}
    for spec in manifest.outputs:
        array = outputs[spec.name]
        encoded[spec.name] = array.tolist()
        if spec.labels is not None:
            encoded[f"{spec.name}_top_k"] = _top_k(array, spec.labels, spec.top_k)
    return encoded


def _top_k(logits: np.ndarray, labels: list[str], k: int) -> list[list[dict[str, Any]]]:
    rows = np.atleast_2d(logits).astype(np.float64)
    if rows.shape[-1] != len(labels):
        # The manifest promised one score per label; say so instead of guessing.
        raise ValueError(f"the model returned {rows.shape[-1]} scores for {len(labels)} labels")
    shifted = np.exp(rows - rows.max(axis=1, keepdims=True))
    probabilities = shifted / shifted.sum(axis=1, keepdims=True)
    best = np.argsort(-probabilities, axis=1)[:, :k]
    return [[{"label": labels[i], "score": round(float(p[i]), 6)} for i in order]
            for p, order in zip(probabilities, best, strict=True)]
