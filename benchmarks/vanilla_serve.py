"""Baseline: the same models as plain Ray Serve deployments on a fresh local
cluster. ``--haproxy`` turns on Ray's fastest configuration (HAProxy ingress
and throughput-optimized Serve); without it, Serve's defaults."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--haproxy", action="store_true")
    parser.add_argument("--model", default="builtin", help="see benchmarks._selection.select")
    parser.add_argument("--manifest")
    args = parser.parse_args()
    if args.haproxy:
        # Must be set before Ray is imported: Serve reads them at import time.
        os.environ["RAY_SERVE_ENABLE_HA_PROXY"] = "1"
        os.environ["RAY_SERVE_THROUGHPUT_OPTIMIZED"] = "1"
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import ray
    from ray import serve
    from starlette.requests import Request

    from benchmarks._selection import infer, select

    @serve.deployment(ray_actor_options={"num_cpus": 0.1})
    class Model:
        def __init__(self, model: str, manifest: str | None, index: int) -> None:
            self.served = select(model, manifest)[index]
            self.model = self.served.make()

        async def __call__(self, request: Request) -> Any:
            return infer(self.model, self.served.manifest, await request.json())

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # run atexit: ray.shutdown()
    ray.init(address="local", include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": os.getcwd()}})
    serve.start(http_options={"host": "127.0.0.1", "port": args.port})
    for index, served in enumerate(select(args.model, args.manifest)):
        serve.run(Model.bind(args.model, args.manifest, index), name=served.manifest["name"], route_prefix=served.path)
    print("READY", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
