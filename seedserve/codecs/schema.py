"""The manifest a model declares: its name, inputs, outputs and serving wishes.

Validated with pydantic; every error names the field path and the value. This
is the shared model of the registry: the manager validates it, the master and
the model servers read it back from the stored document.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from seedserve.codecs._common import InputBase
from seedserve.codecs.registry import REGISTRY
from seedserve.names import INPUT_NAME_PATTERN, MODEL_NAME_PATTERN, WORKER_TYPE_PATTERN

__all__ = [
    "InputSpec",
    "OutputSpec",
    "Scaling",
    "Batching",
    "Manifest",
]



class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: Every registered input kind's spec, told apart by ``kind`` (default
#: ``tensor``); to the type checker, what every spec is.
if TYPE_CHECKING:
    InputSpec = InputBase
else:
    InputSpec = REGISTRY.input_union()


class OutputSpec(_Strict):
    """A named output of the model, in the order the model returns them.

    A classifier may declare ``labels`` (one per score); queries then also get
    the ``top_k`` labels with their softmax scores.
    """

    name: str = Field(pattern=INPUT_NAME_PATTERN)
    labels: list[str] | None = Field(default=None, min_length=2, max_length=100_000)
    top_k: int = Field(default=5, ge=1, le=1000)


class Scaling(_Strict):
    """How a model is served: replicas and autoscaling (Serve's
    ``autoscaling_config`` is built from these), and per-replica admission.

    A replica runs at most ``max_ongoing_requests`` queries at once and lets
    ``max_queued_requests`` more wait; past that it answers 503 with
    ``Retry-After`` at once instead of letting queries pile up. A query that
    takes longer than ``request_timeout_s`` in the replica answers 504.
    ``min_replicas: 0`` scales an idle model to zero; its next query waits
    for a replica to start. ``worker_type`` pins replicas to nodes that
    advertise that type (``seedserve worker join --type``).
    """

    min_replicas: int = Field(default=1, ge=0, le=64)
    max_replicas: int = Field(default=2, ge=1, le=64)
    target_ongoing_requests: float = Field(default=4.0, gt=0)
    upscale_delay_s: float = Field(default=5.0, ge=0, le=3600)
    downscale_delay_s: float = Field(default=60.0, ge=0, le=86400)
    metrics_window_s: float = Field(default=10.0, gt=0, le=3600, description="load is averaged over this window")
    max_ongoing_requests: int = Field(default=16, ge=1, le=10_000)
    max_queued_requests: int = Field(default=64, ge=0, le=100_000)
    request_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    # A replica mostly waits on I/O between queries; a small reservation lets
    # many models share a small node, and autoscaling adds replicas under load.
    num_cpus: float = Field(default=0.1, gt=0, le=64)
    #: GPUs (or a fraction of one) each replica reserves on a GPU worker
    #: type; unset: 1 on a type with GPUs, none elsewhere.
    gpus: float | None = Field(default=None, gt=0, le=8)
    worker_type: str | None = Field(
        default=None, pattern=WORKER_TYPE_PATTERN,
        description="run replicas only on nodes of this worker type (unset: any node)",
    )

    @model_validator(mode="after")
    def _min_not_above_max(self) -> Scaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) exceeds max_replicas ({self.max_replicas})")
        return self


class Batching(_Strict):
    """Dynamic batching: queries that arrive together are merged along the
    batch dimension into one model call (graphs and recommender features with
    their offsets shifted) and the outputs split back.

    ``max_batch_size`` counts items (rows, images, graphs, requests), not
    queries. Unset, batching is on (16) for every model whose inputs all have
    a batch dimension (tensors need shape ``[-1, ...]``) and whose outputs
    have one row per item, which the replica checks on a sample before it
    takes traffic; 1 turns it off. It assumes items do not affect each other.
    """

    max_batch_size: int | None = Field(default=None, ge=1, le=4096)
    # How long a forming batch may wait for more queries. Unset, the replica
    # chooses as load changes (seedserve.batch_plan): no wait while one query
    # at a time keeps up, a wait of at most one call's time past that. A
    # query alone in its replica never waits. A value pins it.
    max_wait_ms: float | None = Field(default=None, ge=0, le=1000)


class Logging(_Strict):
    """What the model's replicas log besides errors (every error answer is
    logged with its request id). ``access``: ``false`` (nothing), ``true``
    (a line per query: request id, status, seconds) or ``"sampled"`` (one
    query in :data:`ACCESS_SAMPLE_EVERY`, the first included)."""

    access: bool | Literal["sampled"] = False

    @field_validator("access", mode="before")
    @classmethod
    def _known_access(cls, value: Any) -> Any:
        if isinstance(value, bool) or value == "sampled":
            return value
        raise ValueError(f"access must be true, false or \"sampled\", not {value!r}")


#: With ``logging.access: sampled``, one query in this many gets an access line.
ACCESS_SAMPLE_EVERY = 100


class Objective(_Strict):
    """What the model must meet, for the worker recommendation: a latency
    percentile (``p50`` or ``p99``, in ms) at an expected peak load."""

    latency_ms: float = Field(gt=0, le=600_000)
    percentile: Literal["p50", "p99"] = "p99"
    peak_rps: float = Field(default=1.0, gt=0, le=10_000_000)


class Manifest(_Strict):
    """What a model is: name, inputs, outputs and how to serve it."""

    name: str = Field(pattern=MODEL_NAME_PATTERN)
    description: str = Field(default="", max_length=2000)
    inputs: list[InputSpec] = Field(min_length=1, max_length=64)
    outputs: list[OutputSpec] = Field(min_length=1, max_length=64)
    scaling: Scaling = Scaling()
    batching: Batching = Batching()
    logging: Logging = Logging()
    objective: Objective | None = None
    #: The model's floating-point precision on a GPU (weights and float inputs); CPUs always run fp32.
    precision: Literal["fp32", "fp16", "bf16"] = "fp32"
    max_body_bytes: int = Field(default=16 * 2**20, gt=0, le=512 * 2**20)

    @field_validator("inputs", "outputs")
    @classmethod
    def _names_are_unique(cls, items: list[Any]) -> list[Any]:
        names = [item.name for item in items]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"names must be unique, repeated: {duplicates}")
        return items

    def input(self, name: str) -> InputSpec:
        """The declared input called ``name`` (KeyError if none)."""
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise KeyError(name)
