"""Calibration on every node of the cluster: one Ray task pinned to each
alive node that advertises a worker type, each measuring its own node
(seedserve.profiler.calibrate), and one stored calibration per type."""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from seedserve.deployments.serve_config import ray_nodes, typed_nodes
from seedserve.profiler.calibrate import Calibration

__all__ = ["calibrate_cluster"]


def _measure(worker_type: str, threads: int) -> dict[str, Any]:
    import torch

    from seedserve.profiler.calibrate import calibrate

    torch.set_num_threads(threads)
    return calibrate(worker_type).model_dump(mode="json")


def calibrate_cluster(address: str, threads: int, only: str | None = None,
                      say: Callable[[str], None] = print) -> dict[str, Calibration]:
    """Calibrate every typed node (a ``worker:<type>`` resource) of the Ray cluster at ``address`` (only
    those of type ``only`` if given), all nodes at once: each is a machine of
    its own. A type with several nodes gets its median node's calibration
    (by total sweep time; of two, the slower), so predictions do not rest on
    the luckiest machine. Returns the calibration per worker type."""
    from seedserve.deployments.serve_api import ray_auth_headers

    if ray_auth_headers():  # the cluster runs with token auth (as `seedserve up` starts it); read at Ray's import
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
    try:
        nodes = {node: kind for node, kind in typed_nodes(ray_nodes()).items() if only in (None, kind)}
        if not nodes:
            raise RuntimeError(f"no alive node advertises worker type {only!r}" if only
                               else "no alive node advertises a worker type (a worker:<type> resource)")
        # num_cpus=0: a calibration runs beside the node's replicas rather than
        # waiting for a free CPU; run it when the node is quiet.
        measure = ray.remote(num_cpus=0, max_retries=0)(_measure)
        pending = {
            measure.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote(kind, threads):
            (node, kind) for node, kind in nodes.items()
        }
        say(f"calibrating {len(nodes)} node(s): " + ", ".join(f"{node[:12]} ({kind})" for node, kind in nodes.items()))
        by_type: dict[str, list[Calibration]] = defaultdict(list)
        for ref, (node, kind) in pending.items():
            calibration = Calibration.model_validate(ray.get(ref))
            say(f"node {node[:12]} ({kind}) on {calibration.host}: call overhead "
                f"{calibration.call_overhead_s * 1e6:.1f} us")
            by_type[kind].append(calibration)
        return {kind: sorted(runs, key=_sweep_s)[len(runs) // 2] for kind, runs in by_type.items()}
    finally:
        ray.shutdown()


def _sweep_s(calibration: Calibration) -> float:
    return sum(point.seconds for points in calibration.points.values() for point in points)
