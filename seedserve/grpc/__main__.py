"""``python -m seedserve.grpc``: the gRPC inference service as a process of
its own, connected to the Ray cluster as a driver (``seedserve up`` starts it
with no secret in its environment)."""

from __future__ import annotations

import argparse
import asyncio
import logging

import ray

from seedserve.deployments.serve_api import ServeRestApi
from seedserve.grpc.server import serve_forever


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m seedserve.grpc", description=__doc__)
    parser.add_argument("--listen", required=True, help="host:port to serve gRPC on")
    parser.add_argument("--ray-address", required=True, help="the Ray cluster's GCS address (host:port)")
    parser.add_argument("--dashboard-url", required=True, help="Ray's dashboard, for Serve's REST API")
    parser.add_argument("--max-message-bytes", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per poll of Serve's API
    # Ray's own logging setup would take over the root logger; seedserve's lines go to this process's log.
    ray.init(address=args.ray_address, log_to_driver=False, configure_logging=False)
    asyncio.run(serve_forever(args.listen, ServeRestApi(args.dashboard_url), args.max_message_bytes))


if __name__ == "__main__":
    main()
