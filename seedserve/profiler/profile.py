"""A model's profile: FLOPs, parameters, weight and activation bytes, and its
ops, from one traced call per batch size on samples built from its manifest.

FLOPs are counted twice, independently: by seedserve's op trace (torch's own
formulas, plus recurrent layers and fused attention) and by ptflops with its
``aten`` backend, which counts multiply-accumulates (MACs) of matrix products
and convolutions only; its FLOPs are reported as 2 x MACs.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import torch
from pydantic import BaseModel

from seedserve.codecs import Manifest, sample_inputs
from seedserve.profiler.trace import GATHER, KINDS, VIEW, Decompose, Op, trace

__all__ = ["BatchProfile", "KindSummary", "ModelProfile", "profile_manifest_model", "profile_model"]


class KindSummary(BaseModel):
    kind: str
    ops: int
    flops: int
    bytes: int


class BatchProfile(BaseModel):
    batch_size: int
    flops: int
    #: ptflops (aten backend) multiply-accumulates; None if it could not count.
    ptflops_macs: int | None
    #: Bytes every op writes (its outputs): the activations of one call.
    activation_bytes: int
    #: Bytes read plus written by every op: the call's memory traffic.
    traffic_bytes: int
    by_kind: list[KindSummary]
    #: Every op that is not a view, as (kind, flops, bytes, name, reduction), for the latency model.
    ops: list[tuple[str, int, int, str, int]]
    #: Bytes of parameters the compute ops read in one call: the weights that
    #: stream through the caches every call (embedding tables only in the rows
    #: gathered, so not counted). 0 in profiles made before it was recorded.
    weight_bytes: int = 0
    views: int
    uncounted_ops: list[str]


class ModelProfile(BaseModel):
    parameters: int
    weight_bytes: int
    batches: list[BatchProfile]
    notes: list[str]

    def at(self, batch_size: int) -> BatchProfile:
        """The profile at ``batch_size``: measured, or scaled from the nearest
        measured size (FLOPs and activations grow with the batch, weights do not)."""
        exact = {b.batch_size: b for b in self.batches}
        if batch_size in exact:
            return exact[batch_size]
        base = min(self.batches, key=lambda b: abs(b.batch_size - batch_size))
        factor = batch_size / base.batch_size
        return base.model_copy(update={
            "batch_size": batch_size,
            "flops": int(base.flops * factor),
            "ptflops_macs": None if base.ptflops_macs is None else int(base.ptflops_macs * factor),
            "activation_bytes": int(base.activation_bytes * factor),
            # A gather's rows (its indices) grow with the batch; a product's reduction length does not.
            "ops": [(kind, int(flops * factor), int(size * factor), name, int(k * factor) if kind == GATHER else k)
                    for kind, flops, size, name, k in base.ops],
        })


def profile_manifest_model(model: Callable[..., Any], manifest: Manifest,
                           batch_sizes: Sequence[int] = (1, 8)) -> ModelProfile:
    """Profile a registered model on samples built from its manifest, called as a replica calls it."""
    from seedserve.runtime import run_model

    return profile_model(model, lambda n: sample_inputs(manifest, n), lambda m, s: run_model(m, manifest, s),
                         batch_sizes)


def profile_model(
    model: Callable[..., Any], sample: Callable[[int], Any], run: Callable[[Callable[..., Any], Any], Any],
    batch_sizes: Sequence[int] = (1, 8),
) -> ModelProfile:
    """Trace ``run(model, sample(n))`` at each batch size ``n``."""
    module = getattr(model, "_model", model)  # a handler's network, if it has one
    parameters = list(module.parameters()) if isinstance(module, torch.nn.Module) else []
    buffers = list(module.buffers()) if isinstance(module, torch.nn.Module) else []
    notes = ["FLOPs count a multiply-add as 2; ptflops reports multiply-accumulates (MACs), shown as FLOPs = 2 x MACs"]
    if not isinstance(module, torch.nn.Module):
        notes.append("the handler's model is not an nn.Module: parameters and weight bytes are unknown (0)")
    batches = []
    for size in batch_sizes:
        try:
            inputs = sample(size)
            ops = trace(functools.partial(run, model, inputs), parameters)
        except Exception as exc:  # e.g. a fixed batch dimension: profile the sizes the model takes
            notes.append(f"batch size {size} not profiled: {type(exc).__name__}: {str(exc)[:200]}")
            continue
        batches.append(_summarize(size, ops, _ptflops_macs(functools.partial(run, model, inputs), notes)))
    if not batches:
        raise ValueError("the model ran on none of the profiled batch sizes: " + "; ".join(notes[1:]))
    for b in batches:
        if b.ptflops_macs and b.flops and not 0.9 <= 2 * b.ptflops_macs / b.flops <= 1.1:
            notes.append(f"batch {b.batch_size}: ptflops gives {2 * b.ptflops_macs:,} FLOPs, the trace {b.flops:,} "
                         "(ptflops counts matrix products and convolutions only, bias additions included)")
    uncounted = sorted({name for b in batches for name in b.uncounted_ops})
    if uncounted:
        notes.append(f"FLOPs are incomplete: no formula for {uncounted}")
    return ModelProfile(
        parameters=sum(p.numel() for p in parameters),
        weight_bytes=sum(t.numel() * t.element_size() for t in parameters + buffers),
        batches=batches,
        notes=notes,
    )


def _summarize(size: int, ops: list[Op], macs: int | None) -> BatchProfile:
    kinds: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for op in ops:
        entry = kinds[op.kind]
        entry[0] += 1
        entry[1] += op.flops
        entry[2] += op.bytes
    return BatchProfile(
        batch_size=size,
        flops=sum(op.flops for op in ops),
        ptflops_macs=macs,
        activation_bytes=sum(op.bytes_written for op in ops),
        traffic_bytes=sum(op.bytes for op in ops),
        by_kind=[KindSummary(kind=k, ops=v[0], flops=v[1], bytes=v[2]) for k in KINDS if (v := kinds.get(k))],
        ops=[(op.kind, op.flops, op.bytes, op.name, op.reduction) for op in ops if op.kind != VIEW],
        weight_bytes=sum(op.weight_bytes for op in ops),
        views=sum(op.kind == VIEW for op in ops),
        uncounted_ops=sorted({op.name for op in ops if not op.counted}),
    )


def _ptflops_macs(call: Callable[[], Any], notes: list[str]) -> int | None:
    """ptflops' count with its aten backend. Its own entry point hooks
    submodules, which TorchScript modules refuse, so its counting mode runs
    around the call directly (no per-layer table, same totals)."""
    from ptflops.aten_engine import FlopCounterMode as PtflopsAten

    counter = PtflopsAten(module=None, verbose=False, print_per_layer_stat=False)
    try:
        with counter, Decompose():  # ptflops sees what composite ops (linear, conv2d, lstm) run as
            call()
    except Exception as exc:
        notes.append(f"ptflops could not count: {type(exc).__name__}: {str(exc)[:200]}")
        return None
    return int(counter.complexity or 0)
