"""Calibration without being asked: the master calibrates each worker type
the first time a node of it is in the cluster (the first `seedserve up`, a
`worker join` of a new type), and again only when torch's version changes.

Each calibration is one Ray task pinned to a node of the type. It waits until
that node is quiet (a load average under half its cores, for at most
``quiet_wait_s``, else it tries again later), then runs the sweeps (seedserve.profiler.calibrate) at the
replicas' torch threads, a minute or two. The result is stored with the
host and torch version it was measured with; until then the type's
predictions say "uncalibrated". ``SEEDSERVE_AUTO_CALIBRATE=false`` turns it off.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping
from typing import Any

__all__ = ["QUIET_LOAD", "calibrate_node", "calibrate_new_types", "needs_calibration"]

logger = logging.getLogger("seedserve.autocalibrate")

#: A node is quiet when its 1-minute load average per core is under this.
QUIET_LOAD = 0.5


def needs_calibration(stored: Mapping[str, Any] | None, torch_version: str) -> bool:
    """Whether a worker type's stored calibration (if any) is missing, not
    measured, or measured under another torch version."""
    if not stored or not stored.get("calibrated"):
        return True
    return stored.get("torch_version") != torch_version


def calibrate_node(worker_type: str, threads: int, repeats: int, quiet_wait_s: float,
                   quiet_load: float = QUIET_LOAD, quick: bool = False) -> dict[str, Any] | None:
    """Run on the node (a Ray task): wait for quiet, then calibrate; None if
    the node stayed busy for ``quiet_wait_s`` (a sweep under load would
    measure the load)."""
    import torch

    from seedserve.profiler.calibrate import calibrate

    deadline = time.monotonic() + quiet_wait_s
    cores = os.cpu_count() or 1
    while os.getloadavg()[0] / cores >= quiet_load:
        if time.monotonic() >= deadline:
            return None
        time.sleep(5)
    torch.set_num_threads(threads)
    return calibrate(worker_type, repeats=repeats, quick=quick).model_dump(mode="json")


async def calibrate_new_types(store: Any, *, threads: int = 1, repeats: int = 5, quiet_wait_s: float = 600.0,
                              quiet_load: float = QUIET_LOAD, quick: bool = False,
                              in_flight: set[str] | None = None) -> list[str]:
    """Calibrate, one node each, the worker types of alive nodes that
    :func:`needs_calibration`, and store each result. Returns the types
    calibrated. ``in_flight`` holds the types being calibrated by an earlier
    call that has not finished, so none is calibrated twice at once."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    in_flight = set() if in_flight is None else in_flight
    chosen = _uncalibrated_nodes(await store.calibrations(), in_flight)
    if not chosen:
        return []
    measure = ray.remote(num_cpus=0, max_retries=0)(calibrate_node)
    in_flight.update(chosen)
    try:
        refs = {kind: measure.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))
                .remote(kind, threads, repeats, quiet_wait_s, quiet_load, quick) for kind, node in chosen.items()}
        logger.info("calibrating worker type(s) %s in the background", ", ".join(sorted(refs)))
        return [kind for kind, ref in refs.items() if await _store_result(store, kind, ref)]
    finally:
        in_flight.difference_update(chosen)


def _uncalibrated_nodes(stored: dict[str, Any], in_flight: set[str]) -> dict[str, str]:
    """One alive node (its Ray id) per worker type that needs calibrating and is not being calibrated."""
    import torch

    from seedserve.deployments.serve_config import ray_nodes, typed_nodes

    chosen: dict[str, str] = {}
    for node, kind in typed_nodes(ray_nodes()).items():
        if kind not in in_flight and kind not in chosen and needs_calibration(stored.get(kind), torch.__version__):
            chosen[kind] = node
    return chosen


async def _store_result(store: Any, kind: str, ref: Any) -> bool:
    """Wait for one node's calibration and store it; whether there was one to store."""
    try:
        result = await asyncio.wrap_future(ref.future())
    except Exception:  # a node that left meanwhile: the next round tries again
        logger.warning("could not calibrate worker type %s", kind, exc_info=True)
        return False
    if result is None:
        logger.info("worker type %s: its node stayed busy; calibration tries again later", kind)
        return False
    await store.put_calibration(kind, result)
    logger.info("calibrated worker type %s on %s", kind, result.get("host"))
    return True
