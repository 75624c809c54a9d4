"""What a model does, op by op: every aten op one call runs, with its FLOPs
(torch's own formulas), the bytes it reads and writes, and its kind.

This is the profiler's ground truth: the FLOPs total, the activation traffic
and the per-op latency prediction all come from one traced call.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import flop_registry

__all__ = ["Decompose", "Op", "ROW_OPS", "trace", "op_kind", "GEMM", "CONV", "DWCONV", "RNN", "GATHER", "MEMORY",
           "VIEW", "KINDS"]

#: Op kinds, each with its own achieved rate in the calibration: matrix
#: products, dense and grouped (depthwise) convolutions, recurrent layers,
#: gathers (embedding lookups), memory-bound ops (elementwise, pooling,
#: norms), and views.
GEMM, CONV, DWCONV, RNN, GATHER, MEMORY, VIEW = "gemm", "conv", "dwconv", "rnn", "gather", "memory", "view"
KINDS = (GEMM, CONV, DWCONV, RNN, GATHER, MEMORY, VIEW)

_GEMM_OPS = {"mm", "addmm", "bmm", "baddbmm", "matmul", "linear", "_scaled_dot_product_flash_attention_for_cpu",
             "_transformer_encoder_layer_fwd", "_native_multi_head_attention"}
_RNN_OPS = {"mkldnn_rnn_layer"}
# Gathers read only the rows they pick, not the whole table they are given.
_GATHER_OPS = {"embedding", "_embedding_bag", "embedding_bag", "index_select", "index_add", "index_add_"}
#: Gathers and scatters of whole rows by an index (args: self, dim, index[, source]).
ROW_OPS = {"index_select", "index_add", "index_add_"}
_SCATTER_OPS = {"index_add", "index_add_"}
_CONV_OPS = {"convolution", "_convolution", "mkldnn_convolution", "_slow_conv2d_forward"}
# Ops that only reinterpret or alias memory: no traffic, only dispatch overhead.
_VIEW_OPS = {"view", "_unsafe_view", "reshape", "expand", "t", "transpose", "permute", "unsqueeze", "squeeze",
             "select", "slice", "alias", "detach", "as_strided", "unbind", "split", "split_with_sizes", "chunk",
             "flatten", "unflatten", "size", "stride", "dim", "is_contiguous", "lift_fresh", "_to_copy_view"}


#: Names of ops that do arithmetic worth counting; one without a formula makes the count incomplete.
_COMPUTE = re.compile(r"mm|conv|linear|matmul|attention|transformer|lstm|gru|rnn|einsum")


@dataclass(frozen=True)
class Op:
    name: str
    kind: str
    flops: int
    bytes_read: int
    bytes_written: int
    #: Whether torch's formulas know this op's FLOPs (compute ops they miss are reported).
    counted: bool
    #: Length of the dot products a compute op takes (its reduction dimension),
    #: or the rows a gather or scatter moves (its indices); 0 for other ops.
    #: Short reductions run far below peak; row ops cost per row.
    reduction: int = 0
    #: Bytes of the model's parameters a compute op is the first in the call
    #: to read (its weights): summed over a call, the weights it streams.
    weight_bytes: int = 0

    @property
    def bytes(self) -> int:
        return self.bytes_read + self.bytes_written


def op_kind(name: str, groups: int = 1) -> str:
    if name in _GEMM_OPS:
        return GEMM
    if name in _CONV_OPS:
        return CONV if groups == 1 else DWCONV
    if name in _RNN_OPS:
        return RNN
    if name in _GATHER_OPS:
        return GATHER
    if name in _VIEW_OPS:
        return VIEW
    return MEMORY


def _nbytes(values: Any) -> int:
    leaves, _ = tree_flatten(values)
    return sum(t.numel() * t.element_size() for t in leaves if isinstance(t, torch.Tensor))


#: Gates per cell in oneDNN's RNN modes (RNN_RELU, RNN_TANH, LSTM, GRU).
_RNN_GATES = {0: 1, 1: 1, 2: 4, 3: 3}


def _rnn_layer_flops(args: tuple[Any, ...]) -> int:
    """One oneDNN RNN layer (the CPU kernel of LSTM and GRU): per step and
    sequence, every gate multiplies the input and the hidden state."""
    x, weight_ih = args[0], args[1]
    mode, batch_first = int(args[9]), bool(args[14])
    steps, batch = (x.shape[1], x.shape[0]) if batch_first else (x.shape[0], x.shape[1])
    gates_times_hidden, width = weight_ih.shape
    hidden = gates_times_hidden // _RNN_GATES.get(mode, 1)
    return int(2 * steps * batch * gates_times_hidden * (width + hidden))


def _attention_flops(args: tuple[Any, ...]) -> int:
    """Scaled dot-product attention on CPU: Q K^T, then the weights times V."""
    query, key, value = args[0], args[1], args[2]
    *batch, length, width = query.shape
    count = math.prod(batch)
    return int(2 * count * length * key.shape[-2] * (width + value.shape[-1]))


def _encoder_layer_flops(args: tuple[Any, ...]) -> int:
    """The fused Transformer encoder layer (TorchScript's fast path): the QKV
    and output projections, attention over all heads, and the feed-forward."""
    src, embed = args[0], int(args[1])
    ffn = args[14].shape[0]
    batch, length = (src.shape[0], src.shape[1]) if src.dim() == 3 else (1, src.shape[0])
    tokens = batch * length
    return int(2 * tokens * (3 * embed * embed + embed * embed + 2 * embed * ffn) + 4 * batch * length * length * embed)


def _native_attention_flops(args: tuple[Any, ...]) -> int:
    """The fused multi-head attention (TorchScript's fast path): Q, K, V and
    output projections, and attention over all heads."""
    query, key, embed = args[0], args[1], int(args[3])
    batch = query.shape[0] if query.dim() == 3 else 1
    length, source = query.shape[-2], key.shape[-2]
    projections = 2 * batch * embed * embed * (2 * length + 2 * source)
    return int(projections + 4 * batch * length * source * embed)


#: FLOPs of compute ops torch's formulas do not know.
_FORMULAS = {
    "_native_multi_head_attention": _native_attention_flops,
    "mkldnn_rnn_layer": _rnn_layer_flops,
    "_scaled_dot_product_flash_attention_for_cpu": _attention_flops,
    "_transformer_encoder_layer_fwd": _encoder_layer_flops,
}


def _indices(name: str, args: tuple[Any, ...]) -> Any:
    """A gather's or scatter's index argument (row ops take it third, embeddings second)."""
    return args[2] if name in ROW_OPS else args[1]


def _gather_bytes(name: str, args: tuple[Any, ...]) -> int:
    """Bytes a gather or scatter moves besides its output: the indices, and
    for a scatter (index_add) the rows it adds, read and written."""
    indices = _indices(name, args)
    moved = int(indices.numel() * indices.element_size()) if isinstance(indices, torch.Tensor) else 0
    if name in _SCATTER_OPS and isinstance(args[3], torch.Tensor):
        moved += 2 * args[3].numel() * args[3].element_size()
    return moved


def _reduction(name: str, kind: str, args: tuple[Any, ...]) -> int:
    try:
        if kind == GATHER:
            indices = _indices(name, args)
            return int(indices.numel()) if isinstance(indices, torch.Tensor) else 0
        if kind in (CONV, DWCONV):
            weight = args[1]
            return int(math.prod(weight.shape[1:]))
        if name in ("addmm", "baddbmm"):
            return int(args[1].shape[-1])
        if name == "mkldnn_rnn_layer":
            return int(args[1].shape[1] + args[2].shape[1])
        if kind == GEMM and isinstance(args[0], torch.Tensor):
            return int(args[0].shape[-1])
    except (AttributeError, IndexError, TypeError, ValueError):
        pass
    return 0


def _gemm(name: str, m: int, k: int, n: int, batch: int = 1) -> Op:
    return Op(name, GEMM, 2 * batch * m * k * n, 4 * batch * (m * k + k * n), 4 * batch * m * n, True, k)


def _pass(name: str, elements: int, reads: int = 1) -> Op:
    return Op(name, MEMORY, 0, 4 * elements * reads, 4 * elements, True)


def _attention_parts(batch: int, length: int, source: int, embed: int, heads: int) -> list[Op]:
    head = embed // max(heads, 1)
    return [
        _gemm("addmm", batch * length, embed, embed), _gemm("addmm", batch * source, embed, embed),
        _gemm("addmm", batch * source, embed, embed),
        _gemm("bmm", length, head, source, batch * heads), _pass("_softmax", batch * heads * length * source),
        _gemm("bmm", length, source, head, batch * heads), _gemm("addmm", batch * length, embed, embed),
    ]


def _encoder_layer_parts(args: tuple[Any, ...]) -> list[Op]:
    src, embed, heads, ffn = args[0], int(args[1]), int(args[2]), int(args[14].shape[0])
    batch, length = (src.shape[0], src.shape[1]) if src.dim() == 3 else (1, src.shape[0])
    tokens = batch * length
    return [*_attention_parts(batch, length, length, embed, heads),
            _pass("add", tokens * embed, 2), _pass("native_layer_norm", tokens * embed),
            _gemm("addmm", tokens, embed, ffn), _pass("relu", tokens * ffn), _gemm("addmm", tokens, ffn, embed),
            _pass("add", tokens * embed, 2), _pass("native_layer_norm", tokens * embed)]


def _native_attention_parts(args: tuple[Any, ...]) -> list[Op]:
    query, key, embed, heads = args[0], args[1], int(args[3]), int(args[4])
    batch = query.shape[0] if query.dim() == 3 else 1
    return _attention_parts(batch, query.shape[-2], key.shape[-2], embed, heads)


#: Fused layers (TorchScript's fast paths) recorded as the ops they fuse, so
#: that each is priced like its unfused twin; their FLOPs sum to the formulas above.
_FUSED_PARTS = {
    "_transformer_encoder_layer_fwd": _encoder_layer_parts,
    "_native_multi_head_attention": _native_attention_parts,
}


_COMPUTE_KINDS = (GEMM, CONV, DWCONV, RNN)


def _storage(t: torch.Tensor) -> int | None:
    """Where a tensor's data lives (views share it); None for tensors without storage."""
    try:
        return int(t.untyped_storage().data_ptr())
    except (RuntimeError, NotImplementedError):
        return None


class _Tracer(TorchDispatchMode):
    def __init__(self, parameters: Iterable[torch.Tensor] = ()) -> None:
        # Named, not super(): torch's __init__ is unannotated, and mypy's untyped_calls_exclude sees named calls only.
        TorchDispatchMode.__init__(self)
        self.ops: list[Op] = []
        self._parameters = {ptr: t.untyped_storage().nbytes() for t in parameters if (ptr := _storage(t)) is not None}
        self._read: set[int] = set()

    def _weight_bytes(self, args: Any) -> int:
        """Bytes of the parameters among ``args`` that no earlier op read (a
        recurrent layer run step by step reads its weights once per step)."""
        leaves, _ = tree_flatten(args)
        stored = {_storage(t) for t in leaves if isinstance(t, torch.Tensor)}
        new = {ptr for ptr in stored if ptr is not None and ptr in self._parameters and ptr not in self._read}
        self._read |= new
        return sum(self._parameters[ptr] for ptr in new)

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        packet = func._overloadpacket
        formula = flop_registry.get(packet)
        if formula is None:
            # Composite ops (linear, conv2d, lstm...) run as their parts, which
            # the formulas know; as torch's own FlopCounterMode does.
            with self:
                decomposed = func.decompose(*args, **kwargs)
            if decomposed is not NotImplemented:
                return decomposed
        out = func(*args, **kwargs)
        name = packet.__name__
        flops = 0
        if formula is not None:
            flops = int(formula(*args, **kwargs, out_val=out))
        elif name in _FORMULAS:
            flops, formula = _FORMULAS[name](args), True
        kind = op_kind(name, int(args[8]) if name in _CONV_OPS and len(args) > 8 else 1)
        written = 0 if kind == VIEW else _nbytes(out)
        if kind == VIEW:
            read = 0
        elif name in _SCATTER_OPS:  # a scatter: its output is the whole table, but it touches only the rows it adds
            written = 0
            read = _gather_bytes(name, args)
        elif name in _GATHER_OPS:
            read = _gather_bytes(name, args) + written
        else:
            read = _nbytes((args, kwargs))
        weights = self._weight_bytes((args, kwargs)) if kind in _COMPUTE_KINDS and self._parameters else 0
        if name in _FUSED_PARTS:  # price a fused layer as the products and passes it runs
            first, *rest = _FUSED_PARTS[name](args)
            self.ops.extend([replace(first, weight_bytes=weights), *rest])
            return out
        self.ops.append(Op(name, kind, flops, read, written, formula is not None or not _COMPUTE.search(name),
                           _reduction(name, kind, args), weights))
        return out


class Decompose(TorchDispatchMode):
    """Runs composite ops as their parts, so that a counting mode entered
    before this one sees matrix products and convolutions, not ``linear``."""

    def __init__(self) -> None:
        TorchDispatchMode.__init__(self)

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func._overloadpacket not in flop_registry:
            with self:
                decomposed = func.decompose(*args, **kwargs)
            if decomposed is not NotImplemented:
                return decomposed
        return func(*args, **kwargs)


@contextmanager
def _plain_attention() -> Iterator[None]:
    """Run attention as its matrix products, not the fused fast path whose
    FLOPs no counter knows."""
    previous = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(previous)


def trace(call: Callable[[], Any], parameters: Iterable[torch.Tensor] = ()) -> list[Op]:
    """The aten ops of one ``call()`` (in inference mode); each compute op
    also counts the bytes it reads of ``parameters`` (the model's)."""
    tracer = _Tracer(parameters)
    with torch.inference_mode(), _plain_attention(), tracer:
        call()
    return tracer.ops
