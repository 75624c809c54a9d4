"""What the multi-host test does from inside one host's network namespace
(`ip netns exec NS python tests/host_probe.py COMMAND ARGS...`): the test
process itself lives outside both hosts and reaches neither's loopback.

Each command prints one JSON value on stdout, except ``load``, which queries
one model from several threads until SIGTERM and appends a line per answer
to a file: ``<monotonic time> <status> <1 if Retry-After else 0>``.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from seedserve.deployments.serve_api import ray_auth_headers


def replicas(dashboard: str, app: str) -> list[dict[str, Any]]:
    """The RUNNING replicas of ``app``'s ModelServer, from Serve's REST API."""
    details = httpx.get(f"{dashboard}/api/serve/applications/", headers=ray_auth_headers(), timeout=10).json()
    application = details["applications"].get(app)
    if application is None:
        return []
    return [{"pid": r["pid"], "node_id": r["node_id"], "node_ip": r["node_ip"]}
            for r in application["deployments"]["ModelServer"]["replicas"] if r["state"] == "RUNNING"]


def nodes(dashboard: str) -> list[dict[str, Any]]:
    """Alive Ray nodes: address and resources (Ray's state API on the dashboard)."""
    answer = httpx.get(f"{dashboard}/api/v0/nodes", params={"detail": "true", "limit": "100"},
                       headers=ray_auth_headers(), timeout=10).json()
    return [{"node_id": n["node_id"], "node_ip": n["node_ip"], "resources": n["resources_total"]}
            for n in answer["data"]["result"]["result"] if n["state"] == "ALIVE"]


def register(manager: str, token: str, artifact: str, manifest: str) -> str | None:
    from seedserve.client import ManagerClient

    with ManagerClient(manager, token, timeout=120) as client:
        return client.register(artifact, json.loads(manifest))


def models(manager: str, token: str) -> Any:
    from seedserve.client import ManagerClient

    with ManagerClient(manager, token) as client:
        return {m.name: [v.model_dump(mode="json") for v in client.versions(m.name)] for m in client.list_models()}


def predict(master: str, key: str, name: str) -> dict[str, Any]:
    answer = httpx.post(f"{master}/models/{name}/predict", headers={"Authorization": f"Bearer {key}"},
                        json={"x": [[0.5] * 16]}, timeout=30)
    return {"status": answer.status_code, "body": answer.json()}


def load(master: str, key: str, name: str, out: str, threads: str) -> None:
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    lock = threading.Lock()
    log = Path(out).open("a", buffering=1)

    def query() -> None:
        with httpx.Client(timeout=10, headers={"Authorization": f"Bearer {key}"}) as http:
            while not done.is_set():
                try:
                    answer = http.post(f"{master}/models/{name}/predict", json={"x": [[0.5] * 16]})
                    status, retry = answer.status_code, "retry-after" in answer.headers
                except httpx.HTTPError:
                    status, retry = 0, False  # no answer at all
                with lock:
                    log.write(f"{time.monotonic():.3f} {status} {int(retry)}\n")
                if status != 200:
                    time.sleep(0.1)

    workers = [threading.Thread(target=query) for _ in range(int(threads))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


COMMANDS = {"replicas": replicas, "nodes": nodes, "register": register, "models": models, "predict": predict,
            "load": load}

if __name__ == "__main__":
    result = COMMANDS[sys.argv[1]](*sys.argv[2:])  # type: ignore[operator]
    if sys.argv[1] != "load":
        print(json.dumps(result))
