"""Running a registered model: load its artifact, build sample inputs, call it,
and name its outputs.

Shared by the manager (which test-loads every artifact in a child process
before storing it) and the model servers (which load it in their replicas),
so both agree on what "the model runs" means.
"""

from __future__ import annotations

import hashlib
import io
import time
import types
import typing
import warnings
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from seedserve._program import ProgramModel, compiled_for_inference, frozen_for_inference, program_model
from seedserve.api import ArtifactFormat
from seedserve.codecs import Decoded, Manifest, sample_inputs
from seedserve.errors import InvalidArtifact, ModelError, SeedserveError, Unavailable
from seedserve.sandbox import SandboxLimits
from seedserve.sandbox.handler import SandboxedHandler

__all__ = ["ARTIFACT_FORMATS", "CPU", "HANDLER_SCRIPT", "HANDLER_WEIGHTS", "Handler", "Placement", "gpu_placement",
           "load_model", "load_served_model", "model_arguments", "place_model",
           "optimize_for_serving", "sample_inputs", "run_model", "items_per_second", "torch_threads"]

#: Artifact formats the registry accepts: a TorchScript archive, a
#: ``torch.export`` program (.pt2), or a handler package (a zip, see :class:`Handler`).
ARTIFACT_FORMATS: tuple[str, ...] = typing.get_args(ArtifactFormat)

#: The files of a handler package.
HANDLER_SCRIPT = "handler.py"
HANDLER_WEIGHTS = "weights.pt"

_TORCH_DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "int64": torch.int64,
    "int32": torch.int32,
    "int16": torch.int16,
    "int8": torch.int8,
    "uint8": torch.uint8,
    "bool": torch.bool,
}


Precision = Literal["fp32", "fp16", "bf16"]
_PRECISIONS: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class Placement:
    """Where a model runs: ``cpu`` or a CUDA device, and at which floating-point
    precision (weights and float inputs; outputs come back as float32)."""

    device: str = "cpu"
    precision: Precision = "fp32"

    @property
    def dtype(self) -> torch.dtype:
        return _PRECISIONS[self.precision]

    @property
    def on_cuda(self) -> bool:
        return self.device.startswith("cuda")


CPU = Placement()


def gpu_placement(precision: Precision, stand_in: str | None = None) -> Placement:
    """The placement of a model on a GPU worker type: this process's CUDA
    device (Ray's ``CUDA_VISIBLE_DEVICES`` makes it the assigned GPU) at the
    manifest's precision. ``stand_in`` replaces the GPU by another device
    (``cpu`` in tests on machines without one: fp32 then, as on any CPU)."""
    if stand_in:
        return Placement(stand_in, precision if stand_in.startswith("cuda") else "fp32")
    if not torch.cuda.is_available():
        raise Unavailable("CUDA is not available on this node; it advertises a GPU worker type but torch sees "
                          "no GPU (check the driver and a CUDA build of torch)", input="worker_type")
    return Placement("cuda", precision)


def place_model(model: Callable[..., Any], placement: Placement) -> Callable[..., Any]:
    """``model`` moved to ``placement``'s device and precision. A handler
    package places itself (its inputs arrive as arrays)."""
    if placement == CPU or not isinstance(model, torch.nn.Module):
        return model
    model = model.to(placement.device)
    return model.to(placement.dtype) if placement.precision != "fp32" else model


def load_model(data: bytes, fmt: str) -> Callable[..., Any]:
    """Load an artifact's bytes into something :func:`run_model` can call.

    TorchScript archives and ``torch.export`` programs hold no pickled Python
    objects, so loading one runs no code from the upload. A handler package
    runs its script by design; its weights load with ``weights_only=True``, so
    they cannot run code. A replica serves what :func:`load_served_model`
    returns; the manager's test-load calls this inside the sandbox.
    """
    if fmt not in ARTIFACT_FORMATS:
        raise InvalidArtifact(f"artifact format {fmt!r} is not supported; use one of "
                              f"{ARTIFACT_FORMATS}", input="format")
    if fmt == "handler":
        return Handler.from_package(data)
    try:
        if fmt == "export":
            return program_model(torch.export.load(io.BytesIO(data)))
        with warnings.catch_warnings():  # deprecated in torch 2.13, still accepted: the SDK says so at registration
            warnings.simplefilter("ignore", DeprecationWarning)
            model: torch.nn.Module = torch.jit.load(io.BytesIO(data), map_location="cpu")
    except Exception as exc:  # torch raises RuntimeError or a zip error for files of another kind
        what, how = (("torch.export program", "torch.export.save(torch.export.export(model, sample_args), path)")
                     if fmt == "export" else ("TorchScript archive", "torch.jit.script(model).save(path)"))
        raise InvalidArtifact(
            f"the artifact is not a {what}; save it with {how} "
            f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})",
            input="artifact",
        ) from exc
    model.eval()
    return model


def load_served_model(data: bytes, fmt: str, manifest: Manifest, limits: SandboxLimits | None = None, *,
                      call_timeout_s: float = 30.0) -> Callable[..., Any]:
    """What a replica serves. A handler package is the uploader's Python, so it
    runs in a sandboxed process of its own (:class:`SandboxedHandler`); the
    other formats hold no Python of theirs and load in the replica."""
    if fmt == "handler":
        return SandboxedHandler(data, manifest, limits, call_timeout_s=call_timeout_s)
    return load_model(data, fmt)


class Handler:
    """A model packaged as a script: a zip holding ``handler.py`` and,
    optionally, ``weights.pt`` (a state dict saved with ``torch.save``).

    The script defines ``load(weights) -> model`` and ``predict(model, inputs)``,
    and may define ``preprocess(inputs) -> inputs`` and
    ``postprocess(outputs) -> outputs``. ``inputs`` are the decoded inputs by
    name (numpy arrays, or dicts of them for graph and recommender inputs);
    the outputs are tensors or arrays in the manifest's output order (one, a
    tuple, or a dict). The script runs as its own module, in the model's
    replicas only.
    """

    def __init__(self, module: types.ModuleType, model: Any) -> None:
        self._module = module
        self._model = model
        self._preprocess = getattr(module, "preprocess", None)
        self._postprocess = getattr(module, "postprocess", None)

    @classmethod
    def from_package(cls, data: bytes) -> Handler:
        """Run a handler package's script and its ``load(weights)``; refuse anything else."""
        source, weights_bytes = _package_parts(data)
        weights = {} if weights_bytes is None else _state_dict(weights_bytes)
        module, model = _run_script(source, weights)
        if isinstance(model, torch.nn.Module):
            model.eval()
        return cls(module, model)

    def __call__(self, inputs: Mapping[str, Decoded]) -> Any:
        if self._preprocess is not None:
            inputs = self._preprocess(dict(inputs))
        outputs = self._module.predict(self._model, inputs)
        return outputs if self._postprocess is None else self._postprocess(outputs)


def _package_parts(data: bytes) -> tuple[bytes, bytes | None]:
    """The handler script and (if present) the weights file of a handler package."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as package:
            names = set(package.namelist())
            if HANDLER_SCRIPT not in names:
                raise InvalidArtifact(
                    f"the handler package has no {HANDLER_SCRIPT}; it holds {sorted(names)[:10]}", input="artifact"
                )
            return package.read(HANDLER_SCRIPT), package.read(HANDLER_WEIGHTS) if HANDLER_WEIGHTS in names else None
    except zipfile.BadZipFile as exc:
        raise InvalidArtifact(
            f"a handler package is a zip of {HANDLER_SCRIPT} (and optionally {HANDLER_WEIGHTS}); "
            f"build one with seedserve.client.handler.package_handler ({exc})",
            input="artifact",
        ) from None


def _state_dict(weights_bytes: bytes) -> dict[str, Any]:
    """The package's weights, loaded with ``weights_only``: pickled objects are refused, never run."""
    try:
        weights: dict[str, Any] = torch.load(io.BytesIO(weights_bytes), map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for anything but tensors and plain containers
        raise InvalidArtifact(
            f"{HANDLER_WEIGHTS} must be a state dict of tensors (it is loaded with weights_only=True, "
            f"so pickled objects are refused and never run): {str(exc).splitlines()[0][:300]}",
            input="artifact",
        ) from None
    return weights


def _run_script(source: bytes, weights: dict[str, Any]) -> tuple[types.ModuleType, Any]:
    """The handler script run as a module, and what its ``load(weights)`` returned."""
    module = types.ModuleType(f"seedserve_handler_{hashlib.sha256(source).hexdigest()[:12]}")
    module.__file__ = HANDLER_SCRIPT
    try:
        exec(compile(source, HANDLER_SCRIPT, "exec"), module.__dict__)  # noqa: S102 - the package's own script
        missing = [name for name in ("load", "predict") if not callable(getattr(module, name, None))]
        if missing:
            raise InvalidArtifact(f"{HANDLER_SCRIPT} must define {' and '.join(missing)}()", input="artifact")
        return module, module.load(weights)
    except SeedserveError:
        raise
    except Exception as exc:
        raise InvalidArtifact(
            f"{HANDLER_SCRIPT} failed while loading: {type(exc).__name__}: {str(exc)[:1000]}", input="artifact"
        ) from exc


def _placed(tensor: torch.Tensor, placement: Placement) -> torch.Tensor:
    """``tensor`` on the placement's device: float inputs at its precision
    (cast before the copy, which then moves fewer bytes), a batch through
    pinned host memory so that the copy is a DMA the GPU runs on its own."""
    if tensor.is_floating_point() and tensor.dtype != placement.dtype:
        tensor = tensor.to(placement.dtype)
    if placement.on_cuda and tensor.dim() and tensor.shape[0] > 1:
        tensor = tensor.pin_memory()
    return tensor.to(placement.device, non_blocking=True)


def model_arguments(manifest: Manifest, decoded: Mapping[str, Decoded], placement: Placement = CPU) -> list[Any]:
    """Positional arguments in declared order: an array becomes a tensor (on
    the placement's device), named arrays (graph, recommender) become several
    tensors in their order, and strings (text without a tokenizer) a ``List[str]``."""
    arguments: list[Any] = []
    for spec in manifest.inputs:
        value = decoded[spec.name]
        parts = list(value.values()) if isinstance(value, dict) else [value]
        for part in parts:
            if part.dtype == object:
                arguments.append([str(item) for item in part.tolist()])
            else:
                tensor = torch.from_numpy(np.ascontiguousarray(part))
                arguments.append(tensor if placement == CPU else _placed(tensor, placement))
    return arguments


def torch_threads(threads: int | None = None) -> int:
    """The intra-op threads a model call on this thread runs with, first set
    to ``threads`` if given: for this thread and for threads that make their
    first torch call later (torch's OpenMP keeps a count per thread, so a
    thread that has already called torch keeps its own)."""
    if threads is not None and threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def items_per_second(model: Callable[..., Any], manifest: Manifest, arrays: Mapping[str, Decoded], items: int,
                     threads: int, flights: int, calls: int = 3) -> float:
    """Items a second that ``flights`` threads of this process, each calling
    the model ``calls`` times on ``arrays`` (``items`` items), all started
    together, complete on ``threads`` torch threads a call, after one untimed
    call at that setting. The process keeps that thread count afterwards;
    the first failure of a call is raised."""
    import threading

    torch_threads(threads)
    run_model(model, manifest, arrays)
    start = threading.Barrier(flights + 1)
    failures: list[BaseException] = []

    def run() -> None:
        start.wait()
        try:
            for _ in range(calls):
                run_model(model, manifest, arrays)
        except BaseException as exc:  # raised by the caller, in its thread
            failures.append(exc)

    workers = [threading.Thread(target=run, name=f"split-{i}", daemon=True) for i in range(flights)]
    for worker in workers:
        worker.start()
    start.wait()
    began = time.perf_counter()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - began
    if failures:
        raise failures[0]
    return flights * calls * items / elapsed


def run_model(model: Callable[..., Any], manifest: Manifest, arrays: Mapping[str, Decoded],
              placement: Placement = CPU) -> dict[str, Any]:
    """Call ``model`` (already on ``placement``, see :func:`place_model`) with
    the inputs in declared order; name its outputs, brought back to the host.

    Returns arrays keyed by the declared output names. A count mismatch
    between what the model returns and what the manifest declares raises
    :class:`InvalidArtifact`.
    """
    if isinstance(model, SandboxedHandler):  # named and checked in and at the edge of its sandbox
        return model(arrays)
    try:
        with torch.inference_mode():
            result = (model(arrays) if isinstance(model, Handler)
                      else model(*model_arguments(manifest, arrays, placement)))
    except Exception as exc:  # the model's own failure, reported as JSON with its message
        first_line = str(exc).strip().splitlines()[-1][:1000] if str(exc).strip() else ""
        raise ModelError(f"the model failed on these inputs: {type(exc).__name__}: {first_line}") from exc
    names = [spec.name for spec in manifest.outputs]
    outputs = _as_sequence(result, names)
    if len(outputs) != len(names):
        raise InvalidArtifact(
            f"the model returned {len(outputs)} output(s) but the manifest declares {len(names)}: {names}",
            input="outputs",
        )
    for spec, value in zip(manifest.outputs, outputs, strict=True):
        width = value.shape[-1] if isinstance(value, (torch.Tensor, np.ndarray)) and value.ndim else None
        if spec.labels is not None and width != len(spec.labels):
            raise InvalidArtifact(
                f"output {spec.name!r} has {width} scores per row but the manifest declares {len(spec.labels)} labels",
                input="outputs",
            )
    return {name: _to_numpy(value, name) for name, value in zip(names, outputs, strict=True)}


def _as_sequence(result: Any, names: Sequence[str]) -> Sequence[Any]:
    if isinstance(result, (tuple, list)):
        return list(result)
    if isinstance(result, dict):
        # By declared name when the names match, else in the model's order.
        return [result[name] for name in names] if set(result) == set(names) else list(result.values())
    return [result]


def _to_numpy(value: Any, name: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        if value.dtype in (torch.float16, torch.bfloat16):  # numpy has no bfloat16; JSON wants float32 anyway
            value = value.float()
        array: np.ndarray = value.detach().cpu().numpy()
        return array
    if isinstance(value, np.ndarray) and value.dtype != object:
        return value
    if isinstance(value, (int, float, bool)):
        return np.asarray(value)
    raise InvalidArtifact(f"output {name!r} is a {type(value).__name__}, not a tensor", input="outputs")


def optimize_for_serving(
    model: Callable[..., Any], manifest: Manifest, samples: Sequence[Mapping[str, Decoded]], repeats: int = 5
) -> tuple[Callable[..., Any], str]:
    """A faster equivalent of a TorchScript ``model`` or a ``torch.export``
    program when there is one: frozen (weights become constants) and
    optimized for inference (oneDNN convolutions, fused conv + ReLU...); a
    program's graph is traced first (:func:`seedserve._program.compiled_for_inference`).
    Kept only if it computes the same outputs on every one of ``samples``
    (to 1e-4; they differ in batch size, so a trace that kept one shape is
    refused) and is not slower on the last, the largest batch. Returns the
    model to serve and why."""
    if not isinstance(model, (torch.jit.ScriptModule, ProgramModel)):
        return model, "runs as loaded (not TorchScript or a torch.export program)"
    checks = []
    for sample in map(_jittered, samples):
        try:
            checks.append((sample, run_model(model, manifest, sample)))
        except SeedserveError:  # e.g. a batch the model does not take
            continue
    if not checks:
        return model, "runs as loaded (no sample to check an optimized graph on)"
    try:
        candidate: Callable[..., Any]
        if isinstance(model, ProgramModel):  # traced on the largest sample, checked on every one
            candidate = compiled_for_inference(model, tuple(model_arguments(manifest, checks[-1][0])))
        else:
            candidate = frozen_for_inference(model)
        for sample, expected in checks:
            got = run_model(candidate, manifest, sample)
            for name, value in expected.items():
                if not np.allclose(got[name], value, rtol=1e-4, atol=1e-5, equal_nan=True):
                    return model, f"runs as loaded (the optimized graph changes output {name!r})"
    except Exception as exc:  # freezing refuses some modules (attributes set in forward, other entry points)
        return model, f"runs as loaded (it cannot be frozen: {type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
    plain, optimized = (_median_call_s(m, manifest, checks[-1][0], repeats) for m in (model, candidate))
    if optimized > plain:
        return model, f"runs as loaded (the optimized graph is slower: {optimized * 1e3:.2f} vs {plain * 1e3:.2f} ms)"
    return candidate, f"frozen and optimized for inference: {plain * 1e3:.2f} -> {optimized * 1e3:.2f} ms per call"


def _jittered(sample: Mapping[str, Decoded]) -> dict[str, Decoded]:
    """``sample`` with its float arrays replaced by random values of the same
    shape: zeros would hide a wrong weight behind a right bias."""
    rng = np.random.default_rng(0)

    def jitter(array: np.ndarray) -> np.ndarray:
        if array.dtype.kind != "f":
            return array
        return rng.standard_normal(array.shape).astype(array.dtype)

    return {name: ({k: jitter(v) for k, v in value.items()} if isinstance(value, dict) else jitter(value))
            for name, value in sample.items()}


def _median_call_s(model: Callable[..., Any], manifest: Manifest, sample: Mapping[str, Decoded], repeats: int) -> float:
    run_model(model, manifest, sample)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run_model(model, manifest, sample)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]
