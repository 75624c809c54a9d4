"""gRPC beside HTTP on the real stack: the KServe v2 gRPC service against
the Open Inference Protocol over HTTP (JSON form and binary extension), and
the native predict route for reference, on the MLP and the CNN.

    .venv/bin/python -m benchmarks.grpc [--seconds 5]

One `seedserve up`, each model registered once (one replica). HTTP is driven
by wrk, gRPC by h2load (nghttp2's C load generator, which speaks HTTP/2 with
prior knowledge, as gRPC does), both one thread, so neither client costs
more CPU than the other. h2load sees HTTP statuses only and gRPC puts its
status in trailers, so a gRPC error is counted from the bytes: a successful
ModelInfer answer here always has the same length (one probe call gives it),
an error answer carries no message at all. Latency percentiles come from
h2load's per-request log. Writes benchmarks/results/grpc.{json,md}.

Paths: gRPC goes service -> model replica (one Ray hop); /v2 over HTTP and
native predict go HAProxy -> model replica (the ingress rewrites a model's
/v2 paths to below its own route, see seedserve.cluster.haproxy).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import re
import statistics
import struct
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from benchmarks._model import MODELS, WORKLOADS, Workload
from benchmarks._system import seedserve_up
from benchmarks._wrk import Result, run_wrk
from seedserve.grpc import grpc_predict_v2_pb2 as pb

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
_METHOD = "/inference.GRPCInferenceService/ModelInfer"


@dataclass(frozen=True)
class Body:
    """One transport's query for one workload."""

    transport: str
    path: str
    content: bytes
    headers: dict[str, str]


def _input(workload: Workload) -> tuple[str, list[int], str, bytes]:
    """The workload's one input as an OIP tensor: name, shape, datatype, raw bytes."""
    payload = json.loads(workload.body)
    if workload.name == "mlp":
        return "x", [1, 16], "FP32", np.asarray(payload["x"], "<f4").tobytes()
    return "image", [1], "BYTES", base64.b64decode(payload["image"]["b64"])


def bodies(workload: Workload) -> list[Body]:
    name, shape, datatype, raw = _input(workload)
    model = workload.manifest["name"]
    v2 = f"/v2/models/{model}/infer"
    blob = struct.pack("<I", len(raw)) + raw if datatype == "BYTES" else raw
    data = [base64.b64encode(raw).decode()] if datatype == "BYTES" else np.frombuffer(raw, "<f4").tolist()
    json_body = json.dumps({"inputs": [{"name": name, "shape": shape, "datatype": datatype, "data": data}]}).encode()
    header = json.dumps({"inputs": [{"name": name, "shape": shape, "datatype": datatype,
                                     "parameters": {"binary_data_size": len(blob)}}],
                         "outputs": [{"name": "y", "parameters": {"binary_data": True}}]}).encode()
    request = pb.ModelInferRequest(model_name=model)
    request.inputs.add(name=name, shape=shape, datatype=datatype)
    request.raw_input_contents.append(blob)
    message = request.SerializeToString()
    return [
        Body("native predict, JSON", workload.path, workload.body.encode(), {"Content-Type": "application/json"}),
        Body("/v2 HTTP, JSON", v2, json_body, {"Content-Type": "application/json"}),
        Body("/v2 HTTP, binary", v2, header + blob, {"Content-Type": "application/octet-stream",
                                                     "Inference-Header-Content-Length": str(len(header))}),
        Body("gRPC, raw contents", _METHOD, b"\0" + struct.pack(">I", len(message)) + message,
             {"content-type": "application/grpc", "te": "trailers"}),
    ]


def grpc_answer_length(target: str, body: Body, key: str) -> int:
    """The length of a successful answer's message (and check that it is one)."""
    import grpc

    from seedserve.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

    request = pb.ModelInferRequest.FromString(body.content[5:])
    with grpc.insecure_channel(target) as channel:
        answer = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
            request, metadata=(("authorization", f"Bearer {key}"),), timeout=30)
    return 5 + answer.ByteSize()


def run_h2load(url: str, body: Body, key: str, *, concurrency: int, seconds: int, answer_length: int) -> Result:
    """h2load for ``seconds`` at ``concurrency`` connections (one stream each)."""
    with tempfile.TemporaryDirectory() as folder:
        data, log = Path(folder) / "body", Path(folder) / "log"
        data.write_bytes(body.content)
        headers = [arg for k, v in {**body.headers, "authorization": f"Bearer {key}"}.items()
                   for arg in ("-H", f"{k}: {v}")]
        out = subprocess.run(["h2load", "-t1", f"-c{concurrency}", "-m1", f"-D{seconds}", "-d", str(data),
                              f"--log-file={log}", *headers, url + body.path],
                             capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
        elapsed_us = sorted(int(line.split("\t")[2]) for line in log.read_text().splitlines() if line.strip())
    done = int(_find(r"requests: \d+ total, \d+ started, (\d+) done", out))
    ok_http = int(_find(r"status codes: (\d+) 2xx", out))
    data_bytes = int(_find(r"traffic: .*, [\d.]+\w*B \((\d+)\) data", out))
    errors = (done - ok_http) + max(done - data_bytes // answer_length, 0)
    return Result(concurrency, float(_find(r"finished in [\d.]+\w*s, ([\d.]+) req/s", out)),
                  _percentile(elapsed_us, 50), _percentile(elapsed_us, 99), errors, done)


def _find(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    if match is None:
        raise RuntimeError(f"h2load output lacks {pattern!r}:\n{text}")
    return match.group(1)


def _percentile(values_us: list[int], q: int) -> float:
    if not values_us:
        return float("nan")
    return statistics.quantiles(values_us, n=100, method="inclusive")[q - 1] / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=5, help="duration of each run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="seedserve-bench-grpc-"))
    results: dict[str, dict[str, list[Result]]] = {}
    with seedserve_up(logs, port_base=26000) as running:
        keys = _register(running)
        for workload in WORKLOADS.values():
            key = keys[workload.name]
            rows = results[workload.name] = {}
            for body in bodies(workload):
                grpc = body.path == _METHOD
                answer_length = grpc_answer_length(running.grpc_target, body, key) if grpc else 0

                def run(concurrency: int, seconds: int, grpc: bool = grpc, body: Body = body, key: str = key,
                        answer_length: int = answer_length) -> Result:
                    if grpc:
                        return run_h2load(f"http://{running.grpc_target}", body, key, concurrency=concurrency,
                                          seconds=seconds, answer_length=answer_length)
                    return run_wrk(running.master_url + body.path, body.content,
                                   {**body.headers, "Authorization": f"Bearer {key}"},
                                   concurrency=concurrency, seconds=seconds)

                run(4, 2)  # warm-up
                rows[body.transport] = []
                for concurrency in args.concurrency:
                    result = run(concurrency, args.seconds)
                    print(f"   {workload.name} {body.transport:22} c={concurrency:<3} "
                          f"{result.requests_per_s:8.0f} req/s"
                          f"  p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms  errors {result.errors}",
                          flush=True)
                    rows[body.transport].append(result)
    _write(results, args)
    failed = [f"{w} {t} c={r.concurrency}"
              for w, by in results.items() for t, rows in by.items() for r in rows if r.errors]
    if failed:
        raise SystemExit(f"runs with errors (their req/s are not results): {', '.join(failed)}")


def _register(running: object) -> dict[str, str]:
    import torch

    from seedserve.client import Client, ManagerClient

    keys = {}
    with ManagerClient(running.manager_url, running.token) as manager:  # type: ignore[attr-defined]
        for name, workload in WORKLOADS.items():
            artifact = running.data_dir / f"{name}.pt"  # type: ignore[attr-defined]
            torch.jit.script(MODELS[name]()).save(str(artifact))
            keys[name] = manager.register(artifact, workload.manifest)
    deadline = time.monotonic() + 180
    for name, workload in WORKLOADS.items():
        with Client(running.master_url, keys[name]) as client:  # type: ignore[attr-defined]
            while True:
                try:
                    client.predict(workload.manifest["name"], **json.loads(workload.body))
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(1)
    return keys


_TITLES = {"mlp": "tiny MLP (16->64->4), one row of 16 floats", "cnn": "small CNN (~83 MFLOPs), one 3x64x64 PNG"}


def _write(results: dict[str, dict[str, list[Result]]], args: argparse.Namespace) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count(),
            "machine": platform.machine(), "seconds_per_run": args.seconds}
    (RESULTS / "grpc.json").write_text(json.dumps(
        {"meta": meta, "results": {w: {t: [asdict(r) for r in rows] for t, rows in by.items()}
                                   for w, by in results.items()}}, indent=2) + "\n")
    lines = [f"Measured {meta['date']} on {meta['cpus']} CPUs ({meta['machine']}), one `seedserve up`, one replica "
             f"per model, {args.seconds} s per row after a 2 s warm-up; HTTP by wrk -t1, gRPC by h2load -t1 "
             "(one stream per connection). Produced by `python -m benchmarks.grpc`."]
    for workload, by in results.items():
        lines += ["", f"**{_TITLES[workload]}**", "",
                  "| transport | connections | req/s | p50 ms | p99 ms | errors | vs /v2 HTTP JSON |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        base = by["/v2 HTTP, JSON"]
        for transport, rows in by.items():
            for i, r in enumerate(rows):
                lines.append(f"| {transport} | {r.concurrency} | {r.requests_per_s:,.0f} | {r.p50_ms:.2f} | "
                             f"{r.p99_ms:.2f} | {r.errors} | {r.requests_per_s / base[i].requests_per_s:.2f}x |")
    (RESULTS / "grpc.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
