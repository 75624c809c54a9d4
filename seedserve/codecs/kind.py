"""What seedserve knows about one input kind, in one object.

A :class:`Kind` holds the kind's manifest spec (a pydantic class), its
decoder and sample builder, its wire form, how its decoded values batch, the
file types it takes and the dashboard's form for it. Everything that differs
by kind (the manifest union, the Open Inference Protocol mapping, the
transports, the SDK's MIME table, the OpenAPI documents, the dashboard)
reads it from :mod:`seedserve.codecs.registry`.

The decoder, the sample builder and the batching strategy are named by
``"module:attribute"`` paths and imported on first use, so reading the
registry (the manager's dashboard, the SDK) imports no decoding library:
a kind's module must itself stay light (heavy imports inside the functions
that need them, or the decoder in another module that its path names).

Wire forms:

- ``tensor``: numbers. JSON nested lists (or what the kind's decoder accepts
  beside them), an Open Inference Protocol numeric tensor, a multipart JSON
  part or file. The spec has ``dtype`` and ``shape`` (batch dimension first).
- ``file``: a file per item. ``{"b64", "mime"}`` in JSON, a multipart file
  part, ``BYTES`` elements holding the files.
- ``json``: a structured JSON value. A multipart JSON part, ``BYTES``
  elements each holding a JSON value.
- ``text``: strings. Raw multipart text parts, ``BYTES`` UTF-8 elements.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal, Protocol

import numpy as np
from pydantic import BaseModel

__all__ = ["Batcher", "Decoded", "Form", "Kind", "Wire", "resolve"]

#: What a decoder returns: one array, or named arrays in the model's argument order.
Decoded = np.ndarray | dict[str, np.ndarray]

Wire = Literal["tensor", "file", "json", "text"]
Widget = Literal["file", "columns", "text", "json"]


class Batcher(Protocol):
    """How the decoded values of one kind count items, agree and merge."""

    def items(self, value: Decoded) -> int:
        """The batch items ``value`` holds."""

    def signature(self, value: Decoded) -> Any:
        """Values with equal signatures can be merged."""

    def merge(self, values: Sequence[Decoded]) -> Decoded:
        """One value from several with the same signature, items in order."""


@cache
def resolve(path: str) -> Any:
    """The object a ``"module:attribute"`` path names, imported on first use."""
    module, _, attribute = path.partition(":")
    if not module or not attribute:
        raise ValueError(f"{path!r} is not a 'module:attribute' path")
    try:
        return getattr(importlib.import_module(module), attribute)
    except AttributeError:
        raise LookupError(f"{path!r}: module {module!r} has no attribute {attribute!r}") from None


@dataclass(frozen=True)
class Form:
    """How the dashboard's "try it" form takes an input of this kind.

    ``widget``: ``file`` (a file chooser accepting ``accept``; examples send
    the file ``file``), ``columns`` (a field per declared column), ``text``
    (a text box) or ``json`` (a JSON text box). ``example`` builds the value
    the examples and the text boxes start with; ``note`` an addition to the
    input's legend (or ``""``).
    """

    widget: Widget
    accept: str = ""
    file: str = ""
    example: Callable[[Any], Any] = lambda spec: None
    note: Callable[[Any], str] = lambda spec: ""


@dataclass(frozen=True)
class Kind:
    """One input kind: its spec, codec, wire form, batching, files and form."""

    name: str
    spec: type[BaseModel]
    #: ``"module:function"``: ``(wire value, spec) -> Decoded``.
    decoder: str
    #: ``"module:function"``: ``(spec, batch size) -> Decoded``, a neutral sample.
    sampler: str
    wire: Wire
    form: Form
    #: What the OpenAPI document says a value of this kind is in JSON.
    doc: str
    #: ``"module:attribute"``: the :class:`Batcher` of its decoded values.
    batching: str = "seedserve.codecs.batching:ROWS"
    #: File suffix -> media type, for the files the SDK sends for it.
    mimes: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        declared = self.spec.model_fields.get("kind")
        if declared is None or declared.default != self.name:
            raise ValueError(f"kind {self.name!r}: its spec {self.spec.__name__} must default 'kind' to {self.name!r}")

    def decode(self, value: Any, spec: Any) -> Decoded:
        """``value`` from the wire as the model gets it."""
        decoded: Decoded = resolve(self.decoder)(value, spec)
        return decoded

    def sample(self, spec: Any, batch_size: int = 1) -> Decoded:
        """A neutral sample of ``batch_size`` items."""
        sample: Decoded = resolve(self.sampler)(spec, batch_size)
        return sample

    def fixed_batch(self, spec: Any) -> bool:
        """Whether an input of this kind declares a batch dimension that is not
        variable (a tensor form's ``shape[0] != -1``): such a model cannot batch."""
        return self.wire == "tensor" and spec.shape[0] != -1

    @property
    def batcher(self) -> Batcher:
        batcher: Batcher = resolve(self.batching)
        return batcher
