"""Calling a ``torch.export`` program (.pt2) with little overhead.

``ExportedProgram.module()`` checks the inputs' guards and flattens and
unflattens them on every call: on the 16 -> 64 -> 4 MLP, 62 us a call
against 13 us for the graph called directly (benchmarks/results/export_runtime.md),
more than the MLP's own arithmetic. :class:`ProgramModel` calls the
program's graph directly with its weights, and checks the inputs against the
program's shape constraints once per distinct shape, with torch's own check
and message. A replica serves :func:`compiled_for_inference`'s faster form
when it computes the same (``runtime.optimize_for_serving``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, cast

import torch
from torch.export.graph_signature import InputKind, OutputKind
from torch.utils import _pytree as pytree

__all__ = ["CheckedGraph", "ProgramModel", "compiled_for_inference", "frozen_for_inference", "program_model"]

#: Distinct input shapes whose constraint check is remembered; past it, checked every call.
_CHECKED_SHAPES = 256

_STATE_KINDS = (InputKind.PARAMETER, InputKind.BUFFER, InputKind.CONSTANT_TENSOR)


class ProgramModel(torch.nn.Module):
    """An exported program's graph with its parameters, buffers and constants
    as this module's own (so ``.to()`` places them and the profiler finds
    them), called with positional tensors. Build with :func:`program_model`."""

    def __init__(self, program: torch.export.ExportedProgram) -> None:
        super().__init__()
        self.program = program
        self.graph = program.graph_module
        self._state: list[str] = []
        for number, spec in enumerate(program.graph_signature.input_specs):
            if spec.kind == InputKind.USER_INPUT:
                continue
            assert spec.target is not None  # a state input always names its tensor
            value = _state_tensor(program, spec.target, spec.persistent)
            name = f"state_{number}"
            if spec.kind == InputKind.PARAMETER:
                self.register_parameter(name, torch.nn.Parameter(value.detach(), requires_grad=False))
            else:
                self.register_buffer(name, value)
            self._state.append(name)
        self._out_spec = program.call_spec.out_spec
        # A single tensor returned as is: unflattening costs a few microseconds a call.
        self._single = self._out_spec is not None and self._out_spec.is_leaf()
        self._checked: set[tuple[Any, ...]] = set()
        self._values = self._state_values()

    def _state_values(self) -> list[torch.Tensor]:
        return [getattr(self, name) for name in self._state]

    def _apply(self, fn: Any, recurse: bool = True) -> ProgramModel:
        # .to() and friends may replace the tensors: take the new ones.
        torch.nn.Module._apply(self, fn, recurse)  # named: torch's _apply is unannotated (untyped_calls_exclude)
        self._values = self._state_values()
        return self

    def check(self, args: tuple[Any, ...]) -> None:
        """Raise torch's own error (which input, which dimension, which bound)
        when ``args`` break the program's shape constraints."""
        shapes = tuple([(a.shape, a.dtype) if isinstance(a, torch.Tensor) else type(a) for a in args])
        if shapes not in self._checked:
            flat, _ = pytree.tree_flatten_with_path((args, {}))
            self.program._check_input_constraints(flat)
            if len(self._checked) < _CHECKED_SHAPES:
                self._checked.add(shapes)

    def call_graph(self, *args: torch.Tensor) -> Any:
        """The program's graph on ``args``, unchecked."""
        outputs = self.graph(*self._values, *args)
        if self._single:
            return outputs[0]
        return outputs if self._out_spec is None else pytree.tree_unflatten(list(outputs), self._out_spec)

    def forward(self, *args: torch.Tensor) -> Any:
        self.check(args)
        return self.call_graph(*args)


class _Graph(torch.nn.Module):
    """A program's graph alone, to trace."""

    def __init__(self, model: ProgramModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, *args: torch.Tensor) -> Any:
        return self.model.call_graph(*args)


class CheckedGraph:
    """A compiled form of a program's graph behind the program's own input
    checks: what serves a program once :func:`compiled_for_inference` found
    an equivalent, faster graph. A plain callable, not a module: a module's
    call costs microseconds, as much as a small model's arithmetic."""

    def __init__(self, model: ProgramModel, compiled: torch.jit.ScriptModule) -> None:
        self.model, self.compiled = model, compiled

    def __call__(self, *args: torch.Tensor) -> Any:
        self.model.check(args)
        return self.compiled(*args)


def compiled_for_inference(model: ProgramModel, args: tuple[torch.Tensor, ...]) -> CheckedGraph:
    """The program's graph (aten operators) traced on ``args``, frozen and
    optimized for inference: oneDNN convolutions with prepacked weights,
    fused convolution + ReLU, folded constants. On the CPU that runs the
    benchmark CNN 2.3x faster than the graph as exported (803 vs 1,864 us at
    batch 1) and the MLP in half the time (7.1 vs 13.3 us), as fast as frozen
    TorchScript, at a load cost of tens of milliseconds. torch.compile (with
    or without Inductor's freezing) and AOTInductor took 0.7-16 s to be ready
    and were slower on both (benchmarks/results/export_runtime.md).
    A trace records one shape's path: the caller checks the result on other
    batch sizes before it serves it (``runtime.optimize_for_serving``)."""
    trace = cast(Callable[..., torch.jit.ScriptModule], torch.jit.trace)  # untyped in torch
    with warnings.catch_warnings():
        # torch 2.13 deprecates TorchScript as a format for users; here it is
        # only the runtime of a graph the user exported. The tracer's own
        # warnings (a value it records as a constant) are what the caller's
        # check on other batch sizes catches.
        warnings.simplefilter("ignore")
        with torch.inference_mode(False), torch.no_grad():
            traced = trace(_Graph(model).eval(), args, check_trace=False, strict=False)
    return CheckedGraph(model, frozen_for_inference(traced))


def frozen_for_inference(module: torch.jit.ScriptModule) -> torch.jit.ScriptModule:
    """``module`` frozen (weights become constants) and optimized for
    inference: what serves TorchScript, and a program's traced graph."""
    with warnings.catch_warnings():  # TorchScript is deprecated in torch 2.13, and still accepted here
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.optimize_for_inference(torch.jit.freeze(module))


def _state_tensor(program: torch.export.ExportedProgram, target: str, persistent: bool | None) -> torch.Tensor:
    if persistent is not False and target in program.state_dict:
        state: torch.Tensor = program.state_dict[target]
        return state
    value = program.constants[target]
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"constant {target!r} is a {type(value).__name__}, not a tensor")
    return value


def _plain(program: torch.export.ExportedProgram) -> bool:
    """Whether the graph can be called directly: its inputs are tensors
    (weights, constants, the caller's) and it returns only the caller's
    outputs (no buffer it mutates, no effect tokens, no script objects)."""
    signature = program.graph_signature
    return (all(spec.kind in (*_STATE_KINDS, InputKind.USER_INPUT) for spec in signature.input_specs)
            and all(spec.kind == OutputKind.USER_OUTPUT for spec in signature.output_specs))


def program_model(program: torch.export.ExportedProgram) -> torch.nn.Module:
    """What serves ``program``: a :class:`ProgramModel` when its graph can be
    called directly, else ``program.module()`` (which handles mutated buffers
    and the rest, at its cost per call)."""
    if _plain(program):
        try:
            return ProgramModel(program)
        except TypeError:  # a constant that is not a tensor
            pass
    return program.module()
