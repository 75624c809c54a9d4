"""The per-model server: one Serve application per registered model.

Its ingress replica does everything a query needs (key check, decode, infer,
encode) so that HAProxy's request reaches the model in a single hop.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import gc
import hashlib
import json
import logging
import math
import os
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar, cast

import numpy as np
from ray import serve
from ray.serve import Application, Deployment
from ray.serve.handle import DeploymentHandle
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from seedserve import batch_plan, dispatch
from seedserve.codecs import Manifest, decode_inputs, sample_inputs
from seedserve.codecs.batching import items, split
from seedserve.codecs.outputs import encode_outputs
from seedserve.codecs.registry import Decoded, kinds_of
from seedserve.codecs.schema import ACCESS_SAMPLE_EVERY
from seedserve.codecs.v2_wire import HEADER_LENGTH
from seedserve.deployments._admission import Admission, CallTime, Deadlines
from seedserve.deployments._master_link import ModelData, master_handle
from seedserve.deployments._metrics import CallLog, ModelMetrics, PathCost, ReplicaTotals
from seedserve.deployments._query import (
    V2_BELOW_MODEL,
    KeyCache,
    bearer_key,
    bearer_key_from,
    error_response,
    oip_error_parts,
    oip_error_response,
    read_body,
    relative_path,
)
from seedserve.deployments._stats import InferenceStats
from seedserve.deployments._transport import parse_payload
from seedserve.deployments._v2_rest import (
    encode_infer_response,
    oip_output_metadata,
    oip_tensor_metadata,
    parse_infer_request,
)
from seedserve.deployments.master_document import allowed_methods
from seedserve.deployments.serve_config import ray_nodes, typed_nodes
from seedserve.dispatch import TOGETHER_TURNS, Route
from seedserve.errors import BodyTimeout, InputTooLarge, MethodNotAllowed, NotFound, SeedserveError, Timeout
from seedserve.logs import REQUEST_ID_HEADER, AccessLog, bind_request, log_access, log_error, request_id_from
from seedserve.ratelimit import WRONG_KEYS_PER_MINUTE
from seedserve.runtime import (
    CPU,
    Placement,
    gpu_placement,
    items_per_second,
    load_served_model,
    optimize_for_serving,
    place_model,
    run_model,
    torch_threads,
)
from seedserve.sandbox import SandboxLimits, gpu_device_files
from seedserve.sandbox.handler import SandboxedHandler
from seedserve.settings import Settings

__all__ = ["MODEL_SERVER", "ModelServer", "build"]

logger = logging.getLogger("seedserve.model_server")
T = TypeVar("T")
R = TypeVar("R")

def _batch_items(queries: list[tuple[dict[str, Decoded], int]]) -> int:
    return sum(count for _, count in queries)


#: How long a starting replica keeps asking the master for what it serves
#: while the master cannot read it (the database restarting, the master
#: itself restarting): a constructor that fails quickly and often makes Serve
#: give the deployment up, and nothing would deploy it again.
_MODEL_DATA_WITHIN_S = 120.0


#: Model calls a replica keeps in its batching record (ModelServer.batching_record).
_RECORDED_CALLS = 512
#: Warm-up's budget for measuring the call time by batch size: it stops at the size that passes it.
#: Splitting the CPUs into calls at once is measured only for a model whose splits all fit in it too.
_CURVE_BUDGET_S = 2.0
#: Each split of the CPUs is timed over at least this much of calls (and at least 3 calls a thread).
_SPLIT_CALLS_S = 0.05

#: What ``/v2/models/<name>`` answers below it besides ``/infer`` (see ModelServer._v2_info).
_V2_INFO = ("", "/ready", "/stats")

#: An Open Inference Protocol answer: status, headers, body.
OipAnswer = tuple[int, dict[str, str], bytes]


@dataclasses.dataclass
class _Entry:
    """One request at an entry point: whether it is a query of the model (the
    protocol's statistics count those), which its route decides."""

    query: bool = False


def _response_status(response: Response) -> int:
    return response.status_code


def _oip_status(answer: OipAnswer) -> int:
    return answer[0]


class _BatchSettings(Protocol):
    """What ``serve.batch`` adds to the function it wraps (``_infer_batch`` is typed as a plain callable)."""

    def set_batch_wait_timeout_s(self, new_batch_wait_timeout_s: float) -> None: ...


async def _model_data(master: DeploymentHandle[Any], name: str, version: int) -> ModelData:
    """``Master.model_data``, retried with backoff for up to :data:`_MODEL_DATA_WITHIN_S`."""
    deadline = time.monotonic() + _MODEL_DATA_WITHIN_S
    pause = 0.5
    while True:
        try:
            data: ModelData = await master.model_data.remote(name, version)
            return data
        except Exception as exc:
            if time.monotonic() + pause > deadline:
                raise
            logger.warning("model %s version %s: the master could not give what it serves (%s); retrying in %.1f s",
                           name, version, exc, pause)
        await asyncio.sleep(pause)
        pause = min(pause * 2, 5.0)


class ModelServer:
    """Serves one model version: ``POST <prefix>/predict`` or
    ``<prefix>/versions/<its version>/predict``, and the Open Inference
    Protocol's model paths at ``<prefix>/v2[/infer|/ready|/stats]`` (where
    the ingress sends ``/v2/models/<name>/...``) or through a handle (the
    master's version-pinned paths, the gRPC service). Each query is authenticated, admitted
    (503 when the replica is full), decoded, batched with others when the
    model allows it, run, and encoded, all within the request timeout (504)."""

    # Serve awaits an async constructor before the replica takes traffic; mypy wants __init__ to return None.
    async def __init__(self, name: str, version: int, artifact_sha256: str | None = None, key_refresh_s: float = 2.0,  # type: ignore[misc]
                       report_s: float = 30.0, wrong_keys_per_minute: int = WRONG_KEYS_PER_MINUTE, *,
                       on_gpu: bool = False) -> None:
        """``on_gpu``: the model's worker type has GPUs; it runs on this
        replica's CUDA device (or the node's stand-in, see Settings.gpu_stand_in)."""
        self._name = name
        Settings().configure_logging("model")
        # Everything the replica serves comes from the master over Ray: it
        # holds no database address and no credential (DESIGN.md, trust boundaries).
        self._master = master_handle()
        data = await _model_data(self._master, name, version)
        if artifact_sha256 is not None and hashlib.sha256(data["artifact"]).hexdigest() != artifact_sha256:
            raise RuntimeError(f"model {name!r} version {version}: the artifact read back is not the registered one")
        self._version = version
        self._routes = {"/predict", f"/versions/{version}/predict"}
        self._load(data, on_gpu)
        key_hashes = data["key_hashes"]
        del data  # the artifact's bytes are not kept
        await self._warm_up()
        self._cap = self._batch_size()
        await self._start_batching()
        scaling = self._manifest.scaling
        self._admission = Admission(
            dispatch.capacity(scaling.max_ongoing_requests, self._cap, self._parallel.flights),
            scaling.max_queued_requests,
        )
        self._deadlines = Deadlines(scaling.request_timeout_s)
        self._metrics = ModelMetrics()
        self._access = AccessLog(self._manifest.logging.access, ACCESS_SAMPLE_EVERY)
        # As many model calls at once as the replica's split of its CPUs allows (batch_plan.parallelism).
        self._executor = ThreadPoolExecutor(max_workers=self._parallel.flights, thread_name_prefix=f"model-{name}")
        self._keys = KeyCache(
            key_hashes, self._fetch_key_hashes, key_refresh_s, model=name, wrong_keys_per_minute=wrong_keys_per_minute,
        )
        # Counted from here: the warm-up's own CPU is no query's path. The last value is sent with every report.
        self._path = PathCost()
        self._path_s: float | None = None
        self._start_tasks(report_s)
        logger.info("model %s version %s ready (batches of up to %d: %s)", name, self._version, self._cap,
                    self._plan.reason)
        # What exists now (Ray, torch, the model) lives as long as the replica:
        # keep it out of the garbage collector's full passes, which would
        # otherwise walk it all and evict the caches the queries run from.
        gc.collect()
        gc.freeze()

    def _load(self, data: ModelData, on_gpu: bool) -> None:
        """The manifest and the model from what the master gave, placed where the model runs."""
        self._manifest = Manifest.model_validate(data["manifest"])
        self._kinds = kinds_of(self._manifest.inputs)
        self._format = data["format"]
        # A handler package places itself: its sandbox gets the GPU's device files.
        self._placement = _placement(self._manifest) if on_gpu and self._format != "handler" else CPU
        self._model = place_model(
            load_served_model(data["artifact"], self._format, self._manifest, _sandbox_limits(),
                              call_timeout_s=self._manifest.scaling.request_timeout_s),
            self._placement,
        )

    async def _warm_up(self) -> None:
        """Pay the slow first calls before this replica takes traffic (a
        TorchScript module compiles on its first call), learn the outputs'
        metadata, and serve the frozen, optimized graph if it is equivalent
        and no slower."""
        sample = sample_inputs(self._manifest)
        self._stats = InferenceStats()
        self._outputs = oip_output_metadata(run_model(self._model, self._manifest, sample, self._placement),
                                            self._two_items(), [o.name for o in self._manifest.outputs])
        if self._manifest.batching.max_batch_size == 1:
            samples = [sample]
        else:
            # A batch of at most 16 items: enough to compare the graphs, bounded for any manifest.
            samples = [sample, sample_inputs(self._manifest, min(self._manifest.batching.max_batch_size or 8, 16))]
        if self._placement == CPU:  # freezing and oneDNN passes are for the CPU
            self._model, how = await asyncio.to_thread(optimize_for_serving, self._model, self._manifest, samples)
        else:
            how = f"runs as loaded on {self._placement.device} at {self._placement.precision}"
        logger.info("model %s version %s %s", self._name, self._version, how)
        self._call_time = CallTime()
        for _ in range(5):
            start = time.perf_counter()
            run_model(self._model, self._manifest, sample, self._placement)
            self._call_time.add(time.perf_counter() - start)
        self._calls = CallLog()  # measured latency reports queries only, not the warm-up
        self._stats = InferenceStats()

    async def _start_batching(self) -> None:
        """The queue of quick queries waiting a turn or two for others
        (Route.TOGETHER); the model's call time measured by batch size up to
        the cap, the split of the reserved CPUs into threads and calls at once
        (measured at the knee), and the first plan (seedserve.batch_plan)
        applied to Serve's batching, which forms as many batches at once as
        calls may run."""
        self._together_queue: list[tuple[dict[str, Decoded], int, asyncio.Future[dict[str, np.ndarray]]]] = []
        self._books = threading.Lock()  # what a call records, from each of the calls in flight
        self._curve = batch_plan.CallCurve(await asyncio.to_thread(self._measure_curve))
        threads = torch_threads()
        self._parallel = await asyncio.to_thread(self._choose_parallelism)
        # torch (OpenMP) keeps a thread count per thread: the event loop's calls (Route.INLINE, TOGETHER) run at it.
        torch_threads(self._parallel.threads)
        if self._parallel.threads != threads:  # the curve again, at the threads each call now has
            self._curve = batch_plan.CallCurve(await asyncio.to_thread(self._measure_curve, self._parallel.threads))
        # Serve's batcher takes up to the cap; each call takes up to the plan's size (dispatch.merged_calls),
        # so lowering the plan never refuses a query already queued.
        batcher = serve.batch(max_batch_size=self._cap, batch_wait_timeout_s=0.0,
                              max_concurrent_batches=self._parallel.flights, batch_size_fn=_batch_items)
        self._infer_batch: Callable[[tuple[dict[str, Decoded], int]], Awaitable[dict[str, np.ndarray] | SeedserveError]]
        self._infer_batch = batcher(self._infer_merged)
        self._arrivals = batch_plan.ArrivalRate()
        self._record: collections.deque[tuple[int, int, str, float]] = collections.deque(maxlen=_RECORDED_CALLS)
        self._planned_at = time.monotonic()
        self._plan = batch_plan.Plan(1, 0.0, "not planned yet")
        self._serve_wait_s = 0.0  # as Serve's batcher above starts
        self._apply(self._next_plan(0.0))

    def _choose_parallelism(self) -> batch_plan.Parallelism:
        """Threads per call and calls at once: on a CPU replica that reserves
        two or more whole CPUs, each split measured at the knee's batch size
        (the size a busy replica calls with); else one call at a time (on
        one thread on a CPU replica)."""
        if self._placement != CPU:  # torch's CPU threads stay as Ray set them
            return batch_plan.Parallelism(torch_threads(), 1, f"runs on {self._placement.device}: one call at a time")
        cpus = batch_plan.reserved_cpus(self._manifest.scaling.num_cpus)
        if cpus == 1:
            torch_threads(1)
            return batch_plan.parallelism(1, {})
        pinned = self._manifest.batching.max_batch_size
        size = min(pinned, self._cap) if pinned is not None else batch_plan.knee(self._curve, self._cap)
        call_s = self._curve.seconds(size)
        splits = batch_plan.splits(cpus)
        calls = max(3, math.ceil(_SPLIT_CALLS_S / call_s))  # enough calls that thread starts do not dominate
        if isinstance(self._model, SandboxedHandler):
            why = "a handler package runs one call at a time in its own sandbox"
        elif dispatch.inline(call_s):
            why = f"calls of {call_s * 1e3:.2f} ms run on the event loop"
        elif (calls + 1) * call_s * len(splits) > _CURVE_BUDGET_S:
            why = f"calls of {call_s * 1e3:.0f} ms take too long to measure each split at warm-up"
        else:
            why = "no split ran at warm-up"
            arrays = sample_inputs(self._manifest, size)
            measured: dict[tuple[int, int], float] = {}
            for threads, flights in splits:
                try:
                    measured[(threads, flights)] = items_per_second(self._model, self._manifest, arrays, size,
                                                                    threads, flights, calls)
                except SeedserveError as exc:  # e.g. out of memory with several calls at once: not this split
                    logger.warning("model %s: %d calls at once failed at warm-up (%s)", self._name, flights, exc)
            chosen = batch_plan.parallelism(cpus, measured, why)
            torch_threads(chosen.threads)
            return chosen
        torch_threads(cpus)
        return batch_plan.parallelism(cpus, {}, why)

    def _measure_curve(self, threads: int | None = None) -> dict[int, float]:
        """Seconds per call at each size warm-up measures (the median of three,
        after one untimed call at the size), within :data:`_CURVE_BUDGET_S`,
        on ``threads`` torch threads if given."""
        if threads is not None:
            torch_threads(threads)
        measured: dict[int, float] = {}
        spent = 0.0
        for size in batch_plan.sizes_to_measure(self._cap):
            arrays = sample_inputs(self._manifest, size)
            times = []
            try:
                for _ in range(4):
                    start = time.perf_counter()
                    run_model(self._model, self._manifest, arrays, self._placement)
                    times.append(time.perf_counter() - start)
            except SeedserveError as exc:  # too large for the model or its memory: batches stop below it
                logger.warning("model %s: batches of %d failed at warm-up (%s); batching up to %d",
                               self._name, size, exc, max(measured))
                self._cap = max(measured)
                break
            measured[size] = sorted(times[1:])[1]
            spent += sum(times)
            if spent > _CURVE_BUDGET_S:
                break
        return measured

    def _next_plan(self, now: float) -> batch_plan.Plan:
        batching = self._manifest.batching
        wait_ms = batching.max_wait_ms
        return batch_plan.plan(self._curve, self._arrivals.rate(now), self._cap, pinned_size=batching.max_batch_size,
                               pinned_wait_s=None if wait_ms is None else wait_ms / 1000)

    def _apply(self, plan: batch_plan.Plan) -> None:
        """Serve with ``plan``: its wait into Serve's batching when it differs
        from the one set there (kept apart from the plan, which a plan of
        batch 1 would leave stale)."""
        self._plan = plan
        if self._cap > 1 and plan.wait_s != self._serve_wait_s:
            cast(_BatchSettings, self._infer_batch).set_batch_wait_timeout_s(plan.wait_s)
            self._serve_wait_s = plan.wait_s
            logger.debug("model %s: %s", self._name, plan.reason)

    def _arrived(self, count: int) -> None:
        """A query of ``count`` items arrived: the rate counts it, and every
        :data:`seedserve.batch_plan.PLAN_EVERY_S` the replica plans again."""
        now = time.monotonic()
        self._arrivals.add(now, count)
        if now - self._planned_at >= batch_plan.PLAN_EVERY_S:
            self._planned_at = now
            self._apply(self._next_plan(now))

    @property
    def batch_size(self) -> int:
        """Items per model call at most, as the replica serves now."""
        return self._plan.batch_size

    def batching_record(self) -> dict[str, Any]:
        """The replica's own record of how it batches (through a handle, for
        operators and tests): the plan and why, the cap, the arrival rate, the
        measured call times (ms) by batch size, and its recent model calls
        (items, queries, route, the wait in force)."""
        with self._books:  # the calls in flight add to the curve meanwhile
            curve = self._curve.as_dict()
        return {
            "plan": dataclasses.asdict(self._plan),
            "cap": self._cap,
            "rate_per_s": self._arrivals.rate(time.monotonic()),
            "call_ms": {size: seconds * 1e3 for size, seconds in curve.items()},
            "threads": self._parallel.threads,
            "parallelism": dataclasses.asdict(self._parallel),
            "calls": [{"items": n, "queries": q, "route": way, "wait_s": wait} for n, q, way, wait in self._record],
        }

    def _start_tasks(self, report_s: float) -> None:
        """The replica's background work: key refresh, metrics and latency reports."""
        replica = serve.get_replica_context().replica_id.unique_id
        loop = asyncio.get_running_loop()
        self._refresh = loop.create_task(self._keys.refresh_forever())
        self._flush = loop.create_task(self._metrics.report_forever(lambda totals: self._send_metrics(replica, totals)))
        self._report = loop.create_task(self._report_forever(report_s))

    def _two_items(self) -> dict[str, np.ndarray] | None:
        """The model's outputs for a sample of two items, None if it does not take two."""
        try:
            return run_model(self._model, self._manifest, sample_inputs(self._manifest, 2), self._placement)
        except SeedserveError:
            return None

    def _batch_size(self) -> int:
        """The batch size to serve with (dispatch.batch_size), once samples of
        two and three items show that batching is possible."""
        configured = self._manifest.batching.max_batch_size
        refusal = None if configured == 1 else self._batching_refusal()
        if refusal is not None:
            logger.warning("model %s: batching off: %s", self._name, refusal)
        return dispatch.batch_size(configured, refusal)

    def _batching_refusal(self) -> str | None:
        """Why this model cannot be batched, or None: a tensor input without a
        variable batch dimension, or outputs that do not split per item."""
        fixed = [spec.name for spec in self._manifest.inputs if self._kinds[spec.name].fixed_batch(spec)]
        if fixed:
            return f"tensor inputs {fixed} have no variable batch dimension (shape[0] != -1)"
        try:
            for n in (2, 3):
                outputs = run_model(self._model, self._manifest, sample_inputs(self._manifest, n), self._placement)
                split(outputs, [1] * n)
        except (ValueError, SeedserveError) as exc:
            return str(exc)
        return None

    async def __call__(self, request: Request) -> Response:
        path = relative_path(request).rstrip("/")
        if path == V2_BELOW_MODEL or path.startswith(V2_BELOW_MODEL + "/"):
            return await self._v2_http(request, path.removeprefix(V2_BELOW_MODEL))
        return await self._entry("http", request.headers.get(REQUEST_ID_HEADER),
                                 lambda entry: self._route(request, entry), error_response, _response_status)

    async def _v2_http(self, request: Request, rest: str) -> Response:
        """``/v2/models/<name>{rest}``, rewritten by the ingress to below this
        application's prefix: answered as the master answers it, errors in the
        protocol's shape. Only infer requests are queries (metrics, statistics)."""
        public = f"/v2/models/{self._name}{rest}"
        if rest == "/infer" and request.method == "POST":
            return await self._entry("v2", request.headers.get(REQUEST_ID_HEADER),
                                     lambda entry: self._infer_v2_http(request, entry), oip_error_response,
                                     _response_status)
        try:
            # The method first, as the master does, whether the key is right or not.
            allowed = allowed_methods(public)
            if allowed is not None and request.method not in allowed:
                raise MethodNotAllowed.on(request.method, public, allowed)
            self._keys.check(bearer_key(request))
            if rest not in _V2_INFO:
                raise NotFound(f"no route {request.method} {public}; see the Open Inference Protocol's REST paths")
            return Response(self._v2_info(rest), headers={"content-type": "application/json"})
        except SeedserveError as exc:
            return oip_error_response(exc)

    async def _infer_v2_http(self, request: Request, entry: _Entry) -> Response:
        """A /v2 infer request over HTTP: the key, then the body within the model's limit, in an admission slot."""
        entry.query = True
        self._keys.check(bearer_key(request))
        header_length = request.headers.get(HEADER_LENGTH)
        content, headers = await self._with_body(request, lambda body: self._v2_outputs(header_length, body))
        return Response(content, headers=headers)

    async def _route(self, request: Request, entry: _Entry) -> Response:
        path = relative_path(request).rstrip("/")
        if path in self._routes:
            if request.method != "POST":
                raise MethodNotAllowed.on(request.method, request.url.path, ["POST"])
            entry.query = True
            return await self._predict(request)
        # Only a caller with one of the model's keys learns what the model
        # serves; anyone else hears what the master says of a model that does not exist.
        self._keys.check(bearer_key(request))
        raise self._no_route(request, path)

    async def _entry(self, protocol: str, request_id: str | None, work: Callable[[_Entry], Awaitable[R]],
                     on_error: Callable[[SeedserveError], R], status_of: Callable[[R], int]) -> R:
        """Every entry point's answer (native HTTP, and ``/v2`` infer from the
        master or the gRPC service): ``work``'s, or ``on_error``'s answer to
        the error it raised, logged, counted in the metrics and timed, and,
        for a query, in the protocol's statistics."""
        start = time.perf_counter()
        bind_request(request_id_from(request_id), self._name, self._version)
        entry, error = _Entry(), None
        try:
            answer = await work(entry)
        except SeedserveError as exc:
            answer = on_error(exc)
            error = self._failed(exc, status_of(answer))
        elapsed = time.perf_counter() - start
        status = status_of(answer)
        self._answered(protocol, status, elapsed, error)
        if entry.query:
            self._stats.answered(status == 200, elapsed)
            self._path.query()
        return answer  # over HTTP, Serve's ingress puts the request id on it (see seedserve.logs)

    def _failed(self, exc: SeedserveError, status: int) -> str:
        """Log an error answer (the bound request's id, model and version are on the line); its code."""
        log_error(status, exc.code, exc.message, exc.input)
        return exc.code

    def _answered(self, protocol: str, status: int, seconds: float, error: str | None) -> None:
        """Count an answer in the metrics, and give it an access line if the manifest asks."""
        self._metrics.answered(status, seconds, error)
        if self._access.wants():
            log_access(protocol, status, seconds)

    async def _send_metrics(self, replica: str, totals: ReplicaTotals) -> None:
        await self._master.record_metrics.remote(self._name, self._version, replica, totals)

    def _no_route(self, request: Request, path: str) -> NotFound:
        if path.startswith("/versions/"):
            return NotFound(
                f"model {self._name!r} serves no version {path.split('/')[2]!r} (yet); list its versions with "
                f"GET /api/models/{self._name}/versions, and retry a new one in a few seconds",
                input="version",
            )
        return NotFound(
            f"no route {request.method} {request.url.path}; use POST /models/{self._name}/predict, "
            f"or /models/{self._name}/versions/<version>/predict for a registered version"
        )

    async def _predict(self, request: Request) -> Response:
        self._keys.check(bearer_key(request))

        async def outputs(body: bytes) -> dict[str, Any]:
            arrays = decode_inputs(self._manifest, await parse_payload(request.headers, body, self._manifest))
            return encode_outputs(self._manifest, await self._infer(arrays))

        return JSONResponse(await self._with_body(request, outputs))

    async def _with_body(self, request: Request, use: Callable[[bytes], Awaitable[T]]) -> T:
        """``use(body)`` in an admission slot, the body read there within the
        model's limit (refused as soon as it is known to be too large)."""
        reading = False

        async def run() -> T:
            nonlocal reading
            reading = True
            body = await read_body(request, self._manifest.max_body_bytes)
            reading = False
            return await use(body)

        try:
            return await self._admitted(run)
        except Timeout:
            if not reading:
                raise
            # A slow client holds its slot no longer than the request timeout.
            raise BodyTimeout(
                f"the body had not arrived within the model's request timeout of "
                f"{self._manifest.scaling.request_timeout_s:g} s; send it in full without pausing"
            ) from None

    async def infer_v2(self, authorization: str, header_length: str | None, body: bytes,
                       request_id: str | None = None) -> OipAnswer:
        """An Open Inference Protocol request forwarded by the master or the
        gRPC service: status, headers, body; errors in the protocol's own shape
        (seedserve.deployments._query). ``request_id``: the one the caller's
        answer carries, for the log lines."""

        async def work(entry: _Entry) -> OipAnswer:
            entry.query = True
            content, headers = await self._infer_v2(authorization, header_length, body)
            return 200, headers, content

        return await self._entry("v2", request_id, work, oip_error_parts, _oip_status)

    async def _infer_v2(self, authorization: str, header_length: str | None,
                        body: bytes) -> tuple[bytes, dict[str, str]]:
        """The response body and headers of a /v2 infer request; errors raise."""
        self._keys.check(bearer_key_from(authorization))
        if len(body) > self._manifest.max_body_bytes:
            raise InputTooLarge(
                f"the body ({len(body):,} bytes) exceeds the limit of {self._manifest.max_body_bytes:,} bytes",
                limit=self._manifest.max_body_bytes,
            )

        return await self._admitted(lambda: self._v2_outputs(header_length, body))

    async def _v2_outputs(self, header_length: str | None, body: bytes) -> tuple[bytes, dict[str, str]]:
        """The answer to a /v2 infer request's body: response body and headers."""
        payload, request = parse_infer_request(header_length, body, self._manifest)
        outputs = await self._infer(decode_inputs(self._manifest, payload))
        return encode_infer_response(self._name, self._version, outputs, request)

    async def _admitted(self, run: Callable[[], Awaitable[T]]) -> T:
        """``run()`` in an admission slot, within the request timeout."""
        timeout_s = self._manifest.scaling.request_timeout_s
        self._metrics.queue(self._admission.waiting)
        try:
            async with self._deadlines.within():
                waited = time.perf_counter()
                async with self._admission.slot():
                    self._stats.queued(time.perf_counter() - waited)
                    return await run()
        except TimeoutError:
            raise Timeout(
                f"the query took longer than the model's request timeout of {timeout_s:g} s; "
                "send smaller inputs, retry later, or raise request_timeout_s in the manifest"
            ) from None

    async def _infer(self, arrays: dict[str, Decoded]) -> dict[str, np.ndarray]:
        count = items(arrays, self._kinds)
        self._arrived(count)
        way = dispatch.route(count, self.batch_size, self._manifest.batching.max_wait_ms or 0.0,
                             self._call_time.seconds, self._admission.running)
        if way is Route.TOGETHER and self._parallel.flights > 1:  # the calls at once run on the model's threads
            way = Route.SERVE_BATCH
        if way is Route.TOGETHER:
            return await self._together(arrays, count)
        if way is Route.SERVE_BATCH:
            result = await self._infer_batch((arrays, count))
            if isinstance(result, SeedserveError):
                raise result
            return result
        self._record.append((count, 1, way.value, 0.0))
        return await self._run(arrays, count)  # Route.INLINE or Route.EXECUTOR, by the same call time

    def _together(self, arrays: dict[str, Decoded], count: int) -> asyncio.Future[dict[str, np.ndarray]]:
        """The outputs of a quick model's query, run in one call with the other
        queries decoded within the next :data:`seedserve.dispatch.TOGETHER_TURNS` turns of the
        event loop: nobody waits for a batch to fill, yet under load the fixed
        cost of a call is shared. On a busy replica that cost is mostly cache
        misses: the tiny MLP's call takes 10 us in a loop but about 100 us
        between queries."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, np.ndarray]] = loop.create_future()
        self._together_queue.append((arrays, count, future))
        if len(self._together_queue) == 1:
            loop.call_soon(self._after_turns, TOGETHER_TURNS - 1)
        return future

    def _after_turns(self, turns: int) -> None:
        """:meth:`_run_together` after ``turns`` more turns of the event loop."""
        if turns > 0:
            asyncio.get_running_loop().call_soon(self._after_turns, turns - 1)
        else:
            self._run_together()

    def _run_together(self) -> None:
        queued, self._together_queue = self._together_queue, []
        # A query whose timeout fired meanwhile is not run.
        queued = [query for query in queued if not query[2].done()]
        try:
            # Nothing else runs meanwhile, so no future left here becomes done but by this loop.
            calls = dispatch.merged_calls([(arrays, count) for arrays, count, _ in queued], self.batch_size,
                                         self._kinds)
            for members, counts, inputs in calls:
                self._metrics.batch(sum(counts))
                self._record.append((sum(counts), len(counts), Route.TOGETHER.value, 0.0))
                outputs: dict[str, np.ndarray] | SeedserveError
                try:
                    outputs = self._timed_run(inputs, sum(counts))
                except SeedserveError as exc:
                    outputs = exc
                for i, share in zip(members, dispatch.shares(outputs, counts), strict=True):
                    if isinstance(share, SeedserveError):
                        queued[i][2].set_exception(share)
                    else:
                        queued[i][2].set_result(share)
        except Exception as exc:  # a bug here must fail the queries, not leave them waiting
            for _, _, future in queued:
                if not future.done():
                    future.set_exception(exc)

    async def _run(self, arrays: dict[str, Decoded], count: int) -> dict[str, np.ndarray]:
        """One model call: on the event loop when calls are quick (a thread hop
        would cost more than the call), else on the model's thread so that the
        replica keeps reading and decoding other queries meanwhile."""
        if self._parallel.flights == 1 and dispatch.inline(self._call_time.seconds):
            return self._timed_run(arrays, count)
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._timed_run, arrays, count)

    def _timed_run(self, arrays: Mapping[str, Decoded], count: int) -> dict[str, np.ndarray]:
        # Timed where it runs, so time spent waiting for the thread is not counted;
        # ``count`` is the call's items, known to the caller.
        start = time.perf_counter()
        try:
            return run_model(self._model, self._manifest, arrays, self._placement)
        finally:
            elapsed = time.perf_counter() - start
            with self._books:
                self._call_time.add(elapsed)
                self._curve.add(count, elapsed)
                self._calls.add(elapsed, count)
                self._path.call(elapsed)
                self._stats.call(count, elapsed)

    async def _fetch_key_hashes(self) -> list[str]:
        hashes: list[str] = await self._master.key_hashes.remote(self._name)
        return hashes

    async def _report_forever(self, interval_s: float) -> None:
        """Every ``interval_s``, the latency of recent model calls into the
        version's registry entry, under this node's worker type, where the
        manager shows it beside the predicted latency."""
        worker_type: str | None = None
        while True:
            await asyncio.sleep(interval_s)
            # A report is only information: no failure here may stop the task
            # (the health check would then restart a replica that serves fine).
            try:
                worker_type = worker_type or await asyncio.to_thread(node_worker_type)
                with self._books:  # the calls in flight add to it meanwhile
                    stats = self._calls.stats()
                if stats is not None and worker_type is not None:
                    # The prediction it is compared with depends on the call's torch threads.
                    threads = self._parallel.threads  # torch's count is per thread; the calls run at this one
                    stats["threads"] = float(threads)
                    stats["flights"] = float(self._parallel.flights)  # calls at once (batch_plan.parallelism)
                    # The end-to-end prediction's per-query path on this type; on a GPU a call's time is not its
                    # CPU, nor with calls at once (their times overlap).
                    if self._placement == CPU and self._parallel.flights == 1:
                        taken = self._path.take(threads)
                        self._path_s = self._path_s if taken is None else taken
                    if self._path_s is not None:
                        stats["path_ms"] = self._path_s * 1e3
                    await self._master.record_measured.remote(self._name, self._version, worker_type, stats)
            except Exception:  # the master, its database or Ray's state API is away: a later report comes
                logger.warning("could not record measured latency for %s", self._name, exc_info=True)

    async def _infer_merged(
        self, queries: list[tuple[dict[str, Decoded], int]]
    ) -> list[dict[str, np.ndarray] | SeedserveError]:
        """One model call per group of queries that can merge; each gets its
        rows. Served through Serve's batcher (``self._infer_batch``, made in
        :meth:`_start_batching`), which collects the queries."""
        results: dict[int, dict[str, np.ndarray] | SeedserveError] = {}
        for members, counts, inputs in dispatch.merged_calls(queries, self.batch_size, self._kinds):
            self._metrics.batch(sum(counts))
            self._record.append((sum(counts), len(counts), Route.SERVE_BATCH.value, self._plan.wait_s))
            outputs: dict[str, np.ndarray] | SeedserveError
            try:
                outputs = await self._run(inputs, sum(counts))
            except SeedserveError as exc:  # the model failed on the merged batch: each query hears it
                outputs = exc
            for i, share in zip(members, dispatch.shares(outputs, counts), strict=True):
                results[i] = share
        return [results[i] for i in range(len(queries))]

    def metadata_v2(self, authorization: str) -> tuple[int, dict[str, str], bytes]:
        """Model metadata in the Open Inference Protocol's form, for one of the model's keys."""
        return self._with_key(authorization, lambda: self._v2_info(""))

    def ready_v2(self, authorization: str) -> tuple[int, dict[str, str], bytes]:
        """The model's readiness (it is: this replica answers), for one of the model's keys."""
        return self._with_key(authorization, lambda: self._v2_info("/ready"))

    def stats_v2(self, authorization: str) -> tuple[int, dict[str, str], bytes]:
        """This replica's inference statistics (the statistics extension), for one of the model's keys."""
        return self._with_key(authorization, lambda: self._v2_info("/stats"))

    def _v2_info(self, rest: str) -> bytes:
        """The JSON body of ``/v2/models/<name>{rest}``: metadata (``""``), readiness
        (it is ready: this replica answers) or statistics (``/stats``)."""
        if rest == "/ready":
            return json.dumps({"name": self._name, "ready": True}).encode()
        if rest == "/stats":
            with self._books:  # the calls in flight add to them meanwhile
                stats = self._stats.as_oip(self._name, self._version)
            return json.dumps(stats).encode()
        return json.dumps(self._metadata()).encode()

    def _with_key(self, authorization: str, answer: Callable[[], bytes]) -> tuple[int, dict[str, str], bytes]:
        try:
            self._keys.check(bearer_key_from(authorization))
        except SeedserveError as exc:
            return oip_error_parts(exc)
        return 200, {"content-type": "application/json"}, answer()

    def _metadata(self) -> dict[str, Any]:
        return {
            "name": self._name,
            "versions": [str(self._version)],
            "platform": {"torchscript": "pytorch_torchscript", "export": "pytorch_export"}.get(self._format,
                                                                                                "python_handler"),
            "inputs": [oip_tensor_metadata(spec) for spec in self._manifest.inputs],
            "outputs": self._outputs,
        }

    def check_health(self) -> None:
        for task, what in ((self._refresh, "the key refresh task"), (self._flush, "the metrics report task"),
                           (self._report, "the latency report task")):
            if task.done() and task.exception() is not None:
                raise RuntimeError(f"{what} died") from task.exception()


#: ModelServer as a Serve deployment (named ModelServer). Made by a call, not
#: a class decorator, so that the type checker sees a Deployment here and the
#: class itself beside it.
MODEL_SERVER: Deployment = serve.deployment(max_ongoing_requests=32, health_check_period_s=5)(ModelServer)


def build(args: dict[str, Any]) -> Application:
    """Application builder for ``import_path: seedserve.deployments.model_server:build``."""
    return _bind(MODEL_SERVER, args)


def application(app: Mapping[str, Any]) -> Application:
    """The application a model application's config (``serve_config.model_application``)
    describes, built here with its deployment's options, for an imperative
    deploy (``serve.run``; see seedserve.deployments.owned_apps)."""
    (deployment,) = app["deployments"]
    options = {key: value for key, value in deployment.items() if key != "name"}
    return _bind(MODEL_SERVER.options(name=deployment["name"], **options), app["args"])


def _bind(server: Deployment, args: Mapping[str, Any]) -> Application:
    """``server`` (the deployment, with options or not) bound to a model
    application's args, and the node's settings for its reports and its key limit."""
    settings = Settings()
    bound: Application = server.bind(
        args["name"], int(args["version"]), args.get("artifact_sha256"), float(args.get("key_refresh_s", 2.0)),
        settings.latency_report_s,
        # Raised only by benchmarks/key_timing.py, which sends thousands of wrong keys.
        settings.wrong_keys_per_minute,
        on_gpu=bool(args.get("on_gpu")),
    )
    return bound


def _placement(manifest: Manifest) -> Placement:
    """Where a model of a GPU worker type runs on this node: its CUDA device,
    or the node's stand-in for one; raises Unavailable without either."""
    return gpu_placement(manifest.precision, Settings().gpu_stand_in)


def _sandbox_limits() -> SandboxLimits:
    """A handler model's sandbox: the node's settings (its torch threads are
    this replica's), and the device files of the GPUs Ray assigned it, if any."""
    devices = gpu_device_files(os.environ.get("CUDA_VISIBLE_DEVICES"))
    return dataclasses.replace(Settings().sandbox_limits, gpu_devices=devices)


def node_worker_type() -> str | None:
    """The worker type this replica's Ray node advertises (its ``worker:<type>`` resource)."""
    import ray

    return typed_nodes(ray_nodes()).get(ray.get_runtime_context().get_node_id())
