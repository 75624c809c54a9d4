"""Serving behaviour on real Ray Serve: dynamic batching, backpressure (503
with Retry-After, never a hang), request timeouts (504) and autoscaling up
under load and back down after it."""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pymongo
import pytest
import torch

from seedserve.client import AsyncClient, Client, ManagerClient
from seedserve.profiler.calibrate import Calibration
from tests.conftest import VENV_BIN, System
from tests.helpers import eventually

pytestmark = pytest.mark.integration


class SumAndBatchSize(torch.nn.Module):
    """Per row: the row's sum, and how many rows the call it ran in had."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x.sum(1), torch.full([x.shape[0]], float(x.shape[0]))], 1)


class Slow(torch.nn.Module):
    """Matrix products on one thread: ``steps`` x a 256x256 product, about
    6 ms per 1,000 steps on this machine's CPU."""

    def __init__(self, steps: int) -> None:
        super().__init__()
        self.steps = steps
        self.w = torch.nn.Parameter(torch.randn(256, 256) / 16, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.repeat(1, 64)
        for _ in range(self.steps):
            y = torch.tanh(y @ self.w)
        return y[:, :4]


class Shared(Slow):
    """As long a call whatever the batch: the ``steps`` products run on one
    row that every item of the call shares, so batching divides a call's
    time by its items, far past any noise in the warm-up's timings (Slow's
    time grows with the batch at small sizes: its gain from batching is
    too small to decide on a noisy machine)."""

    def __init__(self, steps: int) -> None:
        super().__init__(steps)
        self.h0 = torch.nn.Parameter(torch.randn(1, 256) / 16, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.h0 + x.mean() * 0.0  # from the input, so that freezing the graph cannot fold the loop away
        for _ in range(self.steps):
            h = torch.tanh(h @ self.w)
        return x + h[:, :4]


def _register(system: System, tmp_path: Path, model: torch.nn.Module, name: str, **manifest: Any) -> str:
    artifact = tmp_path / f"{name}.pt"
    torch.jit.script(model).save(str(artifact))
    width = 4 if isinstance(model, Slow) else 3
    with ManagerClient(system.manager_url, system.admin_token) as manager:
        return manager.register(artifact, {
            "name": name,
            "inputs": [{"name": "x", "shape": [-1, width]}],
            "outputs": [{"name": "y"}],
            **manifest,
        })


def _serving(system: System, name: str, key: str, width: int) -> None:
    with Client(system.master_url, key, timeout=60) as client:
        eventually(lambda: client.predict(name, x=[[0.0] * width]), timeout_s=90)


def test_concurrent_queries_share_model_calls_and_each_gets_its_own_rows(
    system: System, tmp_path: Path, registered: list[str]
) -> None:
    registered.append("batched")
    key = _register(system, tmp_path, SumAndBatchSize(), "batched", batching={"max_batch_size": 8, "max_wait_ms": 50})
    _serving(system, "batched", key, 3)

    async def flood() -> list[dict[str, Any]]:
        async with AsyncClient(system.master_url, key, timeout=60) as client:
            return await asyncio.gather(*(client.predict("batched", x=[[float(i), 1.0, 2.0]]) for i in range(16)))

    answers = asyncio.run(flood())
    assert [a["y"][0][0] for a in answers] == [i + 3.0 for i in range(16)]  # each query its own row
    seen = [a["y"][0][1] for a in answers]
    assert max(seen) > 1, f"no two queries shared a model call: {seen}"
    assert max(seen) <= 8

    def recorded() -> None:
        text = httpx.get(f"{system.master_url}/metrics", headers=system.operator, timeout=10).text
        assert _sample_sum(text, "seedserve_batch_size_count", 'model="batched"') >= 1

    eventually(recorded, timeout_s=120, interval_s=2)
    # A query of more rows than a batch runs on its own, whole.
    with Client(system.master_url, key) as client:
        big = client.predict("batched", x=np.ones((20, 3), np.float32))["y"]
    assert [row[1] for row in big] == [20.0] * 20


def test_a_quick_models_concurrent_queries_share_calls_without_a_batch_timer(
    system: System, tmp_path: Path, registered: list[str]
) -> None:
    """Batching left to seedserve (no max_wait_ms): queries that arrive
    together still share a call; they wait a turn or two of the replica's
    event loop, not a timer."""
    registered.append("together")
    key = _register(system, tmp_path, SumAndBatchSize(), "together")
    _serving(system, "together", key, 3)

    async def flood() -> list[dict[str, Any]]:
        async with AsyncClient(system.master_url, key, timeout=60) as client:
            return await asyncio.gather(*(client.predict("together", x=[[float(i), 1.0, 2.0]]) for i in range(32)))

    def shared() -> None:
        answers = asyncio.run(flood())
        assert [a["y"][0][0] for a in answers] == [i + 3.0 for i in range(32)]  # each query its own row
        seen = [a["y"][0][1] for a in answers]
        assert max(seen) > 1, f"no two queries shared a model call: {seen}"
        assert max(seen) <= 16  # the default batch size

    eventually(shared, timeout_s=60, interval_s=1)


def _batching_record(system: System, name: str) -> dict[str, Any]:
    """The model replica's own record of how it batches (ModelServer.batching_record), through a Serve handle."""
    code = (
        "import json, ray; from ray import serve; from seedserve.deployments.serve_config import model_app_name; "
        f"ray.init(address='127.0.0.1:{system.env['SEEDSERVE_RAY_PORT']}', namespace='serve', log_to_driver=False, "
        "logging_level='ERROR'); "
        f"h = serve.get_deployment_handle('ModelServer', model_app_name({name!r})); "
        "print(json.dumps(h.batching_record.remote().result()))"
    )
    done = subprocess.run([str(VENV_BIN / "python"), "-c", code], env={**system.env, "RAY_AUTH_MODE": "token"},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    record: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return record


def test_a_lone_query_runs_alone_at_once_and_batches_grow_and_shrink_with_the_arrival_rate(
    system: System, tmp_path: Path, registered: list[str]
) -> None:
    """Default manifest (batching left to the replica), a model of about 10 ms
    a call at any batch size. One query at a time: each runs alone, on the
    model's thread, with no wait in force. A flood: calls of several queries through Serve's
    batching, with a wait chosen from the arrival rate. Quiet again: the wait
    is gone and a query runs alone."""
    registered.append("adaptive")
    key = _register(system, tmp_path, Shared(900), "adaptive")
    _serving(system, "adaptive", key, 4)
    with Client(system.master_url, key, timeout=60) as client:
        for i in range(10):
            client.predict("adaptive", x=[[float(i)] * 4])
    lone = _batching_record(system, "adaptive")
    assert lone["cap"] == 16 and lone["plan"]["batch_size"] > 1, lone["plan"]
    assert lone["plan"]["wait_s"] == 0.0, lone["plan"]
    assert len(lone["calls"]) >= 10
    assert all((c["items"], c["queries"], c["route"], c["wait_s"]) == (1, 1, "executor", 0.0) for c in lone["calls"])

    async def flood(seconds: float) -> None:
        async with AsyncClient(system.master_url, key, timeout=60) as client:
            end = asyncio.get_running_loop().time() + seconds

            async def one_connection() -> None:
                while asyncio.get_running_loop().time() < end:
                    await client.predict("adaptive", x=[[1.0] * 4])

            await asyncio.gather(*(one_connection() for _ in range(32)))

    asyncio.run(flood(4.0))
    busy = _batching_record(system, "adaptive")
    batched = [c for c in busy["calls"] if c["route"] == "serve_batch"]
    assert max(c["queries"] for c in batched) > 1, busy["calls"][-20:]
    assert max(c["wait_s"] for c in batched) > 0, (busy["plan"], busy["rate_per_s"])
    # The plan's size moves with the curve live calls correct; Serve never batches past the cap.
    assert all(c["items"] <= busy["cap"] for c in batched), busy["calls"][-20:]

    time.sleep(4)  # the arrival rate decays (time constant 1 s)
    with Client(system.master_url, key, timeout=60) as client:
        client.predict("adaptive", x=[[2.0] * 4])
    quiet = _batching_record(system, "adaptive")
    assert quiet["plan"]["wait_s"] == 0.0, (quiet["plan"], quiet["rate_per_s"])
    assert quiet["calls"][-1] == {"items": 1, "queries": 1, "route": "executor", "wait_s": 0.0}


def test_a_flooded_model_answers_503_with_retry_after_and_never_hangs(
    system: System, tmp_path: Path, registered: list[str]
) -> None:
    registered.append("narrow")
    # About a quarter of a second per call here: the 12 queries arrive while the first still runs.
    key = _register(system, tmp_path, Slow(40_000), "narrow", batching={"max_batch_size": 1},
                    scaling={"min_replicas": 1, "max_replicas": 1, "max_ongoing_requests": 1, "max_queued_requests": 2})
    _serving(system, "narrow", key, 4)
    url = f"{system.master_url}/models/narrow/predict"

    async def flood() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as http:
            return await asyncio.gather(*(
                http.post(url, json={"x": [[0.0] * 4]}, headers={"Authorization": f"Bearer {key}"}) for _ in range(12)
            ))

    # A query that hung would fail the gather with httpx's ReadTimeout (60 s).
    responses = asyncio.run(flood())
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {200, 503}, statuses
    refused = [r for r in responses if r.status_code == 503]
    assert len(refused) >= 6 and statuses.count(200) >= 3, statuses
    for response in refused:
        assert int(response.headers["retry-after"]) >= 1
        assert response.json()["error"]["code"] == "overloaded"


def test_a_query_past_the_request_timeout_gets_504(system: System, tmp_path: Path, registered: list[str]) -> None:
    registered.append("too-slow")
    # About half a second per call here, ten times the timeout, whatever the graph optimization gains.
    key = _register(system, tmp_path, Slow(40_000), "too-slow", batching={"max_batch_size": 1},
                    scaling={"request_timeout_s": 0.05})
    url = f"{system.master_url}/models/too-slow/predict"
    with httpx.Client(timeout=60) as http:
        def timed_out() -> httpx.Response:
            response = http.post(url, json={"x": [[0.0] * 4]}, headers={"Authorization": f"Bearer {key}"})
            assert response.status_code == 504, response.text
            return response

        response = eventually(timed_out, timeout_s=90)
    assert response.json()["error"]["code"] == "timeout"
    assert "request_timeout_s" in response.json()["error"]["message"]


def _running_replicas(system: System, name: str) -> int:
    return len(system.replicas(f"model-{name}"))


def test_load_adds_a_replica_and_idleness_removes_it(system: System, tmp_path: Path, registered: list[str]) -> None:
    registered.append("elastic")
    key = _register(system, tmp_path, Slow(300), "elastic", batching={"max_batch_size": 1}, scaling={
        "min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 1,
        "upscale_delay_s": 1, "downscale_delay_s": 3, "metrics_window_s": 2})
    _serving(system, "elastic", key, 4)
    assert _running_replicas(system, "elastic") == 1
    stop = threading.Event()

    def load() -> None:
        with Client(system.master_url, key, timeout=60) as client:
            while not stop.is_set():
                client.predict("elastic", x=[[0.0] * 4])

    workers = [threading.Thread(target=load) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        def scaled_up() -> None:
            assert _running_replicas(system, "elastic") >= 2

        eventually(scaled_up, timeout_s=90, interval_s=1)
    finally:
        stop.set()
        for worker in workers:
            worker.join(60)

    def back_to_one() -> None:
        assert _running_replicas(system, "elastic") == 1

    eventually(back_to_one, timeout_s=90, interval_s=1)


def test_a_model_scaled_to_zero_answers_its_first_query(system: System, tmp_path: Path, registered: list[str]) -> None:
    registered.append("sleepy")
    key = _register(system, tmp_path, SumAndBatchSize(), "sleepy", scaling={
        "min_replicas": 0, "max_replicas": 1, "downscale_delay_s": 1, "metrics_window_s": 1})
    _serving(system, "sleepy", key, 3)

    def at_zero() -> None:
        assert _running_replicas(system, "sleepy") == 0

    eventually(at_zero, timeout_s=90, interval_s=1)
    with Client(system.master_url, key, timeout=60) as client:
        answer = client.predict("sleepy", x=[[1.0, 2.0, 3.0]])
    assert answer["y"] == [[6.0, 1.0]]
    # Again at zero, a /v2 query (which the ingress sends to the model's own application) scales it up as well.
    eventually(at_zero, timeout_s=90, interval_s=1)
    v2 = httpx.post(f"{system.master_url}/v2/models/sleepy/infer", timeout=60,
                    headers={"Authorization": f"Bearer {key}"},
                    json={"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1.0, 2.0, 3.0]}]})
    assert v2.status_code == 200, v2.text
    assert v2.json()["outputs"][0]["data"] == [6.0, 1.0]


def test_replicas_run_on_the_node_of_their_worker_type(system: System, tmp_path: Path, registered: list[str]) -> None:
    """Two Ray nodes on this machine: the head (type cpu-local) and a node
    started by `seedserve worker join --type tiny` that offers 2 CPUs. The
    model on it reserves both, so its replica splits them into torch threads
    and calls at once by measuring each split at warm-up, and serves with it."""
    log = tmp_path / "worker.log"
    worker = subprocess.Popen(
        [str(VENV_BIN / "seedserve"), "worker", "join", "--address", f"127.0.0.1:{system.env['SEEDSERVE_RAY_PORT']}",
         "--type", "tiny", "--num-cpus", "2", "--port-base", "24600", "--log-dir", str(tmp_path)],
        env=system.env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        eventually(lambda: _assert_in(log.read_text(), "worker 'tiny' is up"), timeout_s=120, interval_s=1)
        keys = {}
        # On the 2-CPU node, a model of matrix products (calls of milliseconds, too slow for the event loop).
        split_model = Slow(200)
        for name, model, scaling in (("on-tiny", split_model, {"worker_type": "tiny", "num_cpus": 2}),
                                     ("on-head", SumAndBatchSize(), {"worker_type": "cpu-local"})):
            registered.append(name)
            keys[name] = _register(system, tmp_path, model, name, scaling=scaling)
            _serving(system, name, keys[name], 4 if model is split_model else 3)
        split = _batching_record(system, "on-tiny")
        parallel = split["parallelism"]
        assert parallel["threads"] * parallel["flights"] == 2, parallel
        assert "2 reserved CPUs (measured 2 thread(s) x 1 call(s)" in parallel["reason"], parallel
        assert "1 thread(s) x 2 call(s)" in parallel["reason"], parallel
        assert split["threads"] == parallel["threads"]
        default = _batching_record(system, "on-head")["parallelism"]
        assert (default["threads"], default["flights"]) == (1, 1), default  # the default 0.1 CPU

        inputs = [[[i / 24, 0.5, -0.25, 1.0]] for i in range(24)]

        async def flood() -> list[dict[str, Any]]:
            async with AsyncClient(system.master_url, keys["on-tiny"], timeout=60) as client:
                return await asyncio.gather(*(client.predict("on-tiny", x=x) for x in inputs))

        with torch.inference_mode():
            expected = [split_model(torch.tensor(x)).tolist()[0] for x in inputs]
        for answer, row in zip(asyncio.run(flood()), expected, strict=True):  # each query its own row
            assert answer["y"][0] == pytest.approx(row, rel=1e-3, abs=1e-4)
        nodes = {name: _replica_nodes(system, name) for name in ("on-tiny", "on-head")}
        head = _replica_nodes(system, "master", deployment="Master")
        assert len(nodes["on-tiny"]) == 1 and len(nodes["on-head"]) == 1 and len(head) == 1, nodes
        assert nodes["on-head"] == head
        assert nodes["on-tiny"] != head
        _calibrate_every_node(system)
    finally:
        # Remove the models first: replicas on a node that leaves would be rescheduled nowhere.
        with ManagerClient(system.manager_url, system.admin_token) as manager:
            for name in list(registered):
                manager.delete_model(name)
                registered.remove(name)
        worker.send_signal(signal.SIGTERM)
        worker.wait(90)
    assert worker.returncode == 0, log.read_text()[-2000:]


def _calibrate_every_node(system: System) -> None:
    """`seedserve calibrate` measures each typed node on that node (a Ray task
    pinned there) and stores one calibration per worker type."""
    started = datetime.now(UTC)
    run = subprocess.run([str(VENV_BIN / "seedserve"), "calibrate"], env=system.env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "calibrating 2 node(s)" in run.stderr, run.stderr[-3000:]
    client = pymongo.MongoClient(system.mongo_uri)
    try:
        stored = {doc["_id"]: doc for doc in client["seedserve"]["calibrations"].find({})}
    finally:
        client.close()
    for worker_type in ("tiny", "cpu-local"):
        calibration = Calibration.model_validate(stored[worker_type])
        assert calibration.calibrated and calibration.worker_type == worker_type
        assert calibration.measured_at >= started
        assert calibration.points["gemm"] and calibration.streaming


def _assert_in(text: str, part: str) -> None:
    assert part in text, text[-1000:]


def _replica_nodes(system: System, app: str, deployment: str = "ModelServer") -> set[str]:
    return {r["node_id"] for r in system.replicas(app if app == "master" else f"model-{app}", deployment)}


def test_metrics_count_queries_by_model_and_status(system: System, tmp_path: Path, registered: list[str]) -> None:
    registered.append("metered")
    key = _register(system, tmp_path, SumAndBatchSize(), "metered")
    _serving(system, "metered", key, 3)
    with Client(system.master_url, key) as client:
        for _ in range(5):
            client.predict("metered", x=[[1.0, 2.0, 3.0]])
    bad = httpx.post(f"{system.master_url}/models/metered/predict", json={"x": [[1.0]]},
                     headers={"Authorization": f"Bearer {key}"})
    assert bad.status_code == 400

    def counted() -> str:
        text = httpx.get(f"{system.master_url}/metrics", headers=system.operator, timeout=10).text
        assert _sample_sum(text, "seedserve_requests", 'model="metered"', 'code="200"') >= 6  # +1 from _serving
        assert _sample_sum(text, "seedserve_requests", 'model="metered"', 'code="400"') >= 1
        return text

    text = eventually(counted, timeout_s=120, interval_s=2)  # replicas report to the master every second
    assert _sample_sum(text, "seedserve_request_duration_seconds_count", 'model="metered"') >= 7
    assert 'seedserve_replicas{model="metered",version="1"} 1.0' in text
    assert "# TYPE seedserve_request_duration_seconds histogram" in text


def _sample_sum(text: str, metric: str, *labels: str) -> float:
    """The sum of the samples of ``metric`` (any suffix-free name match) whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in (metric, metric + "_total") and all(label in line for label in labels):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_serve_deploy_of_configs_serve_yaml_brings_back_every_registered_model(
    system: System, tmp_path: Path, registered: list[str]
) -> None:
    """`serve deploy configs/serve.yaml` replaces the declarative application
    list with the master alone; the registered models, which the reconciler
    deploys outside that list, must be serving afterwards."""
    registered.append("survivor")
    key = _register(system, tmp_path, SumAndBatchSize(), "survivor")
    _serving(system, "survivor", key, 3)
    config = (Path(__file__).parents[2] / "configs" / "serve.yaml").read_text()
    dashboard = f"http://127.0.0.1:{system.env['SEEDSERVE_DASHBOARD_PORT']}"
    for default, ours in (("mongodb://127.0.0.1:27017", system.mongo_uri), ("http://127.0.0.1:8265", dashboard),
                          ("port: 8000", f"port: {system.env['SEEDSERVE_MASTER_PORT']}"),
                          ("reconcile_interval_s: 2.0", "reconcile_interval_s: 1.0"),
                          # The operator fills in the SHA-256 of the tokens /metrics and /cluster accept.
                          ("token_sha256: []", "token_sha256: " + json.dumps(sorted(
                              hashlib.sha256(t.encode()).hexdigest()
                              for t in (system.admin_token, system.metrics_token))))):
        assert default in config
        config = config.replace(default, ours)
    (tmp_path / "serve.yaml").write_text(config)
    # `ray start --head` turns Ray's token auth on; its CLI presents the token in token mode.
    deployed = subprocess.run([str(VENV_BIN / "serve"), "deploy", str(tmp_path / "serve.yaml"), "--address", dashboard],
                              env={**system.env, "RAY_AUTH_MODE": "token"}, capture_output=True, text=True, timeout=120)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr

    def back() -> None:
        with Client(system.master_url, key) as client:
            assert client.predict("survivor", x=[[1.0, 1.0, 1.0]])["y"] == [[3.0, 1.0]]
        assert _running_replicas(system, "survivor") == 1

    eventually(back, timeout_s=120, interval_s=1)
