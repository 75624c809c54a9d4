"""``/api/cluster`` and ``/api/models/{name}/try``: what the master says about
the caller's models, and a query to one of them sent through the manager."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import Response

from seedserve import api
from seedserve.errors import InvalidInput, Unavailable
from seedserve.manager_app._json import read_limited
from seedserve.manager_app.auth import caller
from seedserve.manager_app.master_view import LiveStats
from seedserve.manager_app.state import ManagerState

__all__ = ["cluster_view", "get_cluster", "try_model"]

#: The "try it" form sends one file of at most this size.
MAX_TRY_BYTES = 16 * 2**20


async def cluster_view(state: ManagerState, user: str) -> dict[str, Any]:
    """Nodes and worker types, and for each of ``user``'s models its status,
    replicas and live numbers. Other users' models are left out."""
    mine = {doc["name"] for doc in await state.store.list(user)}
    cluster = await state.master.cluster()
    live = await state.master.live() if "error" not in cluster else {}
    served = cluster.get("models", {})
    models = {}
    for name in sorted(mine):
        apps = served.get(name, {}).get("applications", [])
        default = next((a for a in apps if a["version"] == served[name].get("serving")), None)
        models[name] = {
            "status": default["status"] if default else "NOT_DEPLOYED",
            # Why it is not running: PENDING's reason (no node offers its
            # worker type), or a replica's error ("CUDA is not available...").
            "reason": default.get("reason") if default else None,
            "replicas": sum(a["replicas"] for a in apps),
            "applications": apps,
            **asdict(live.get(name, LiveStats())),
        }
    nodes = cluster.get("nodes", [])
    worker_types = sorted({t for node in nodes for t in node["worker_types"]})
    return {"master": cluster.get("error", "ok"), "nodes": nodes, "worker_types": worker_types, "models": models}


async def get_cluster(request: Request) -> api.Cluster:
    state, who = await caller(request)
    return api.Cluster.model_validate(await cluster_view(state, who.user))


async def try_model(request: Request) -> Response:
    """The dashboard's "try it": the body (JSON or multipart, as for the
    model's endpoint) goes to the master with the key in ``X-Model-Key``;
    the master's answer comes back as it is."""
    state, who = await caller(request)
    name = request.path_params["name"]
    await state.store.get(name, who.user)
    key = request.headers.get("x-model-key", "").strip()
    if not key:
        raise InvalidInput("send one of this model's keys in the X-Model-Key header", input="X-Model-Key")
    body = await read_limited(request, MAX_TRY_BYTES, "'try it'")
    try:
        answer = await state.master.query(name, key, body, request.headers.get("content-type", ""))
    except httpx.HTTPError as exc:
        raise Unavailable(f"the master at {state.master.url} did not answer: {exc}") from None
    # Retry-After tells the page to try again while the model starts.
    headers = {"Retry-After": answer.headers["retry-after"]} if "retry-after" in answer.headers else None
    return Response(answer.content, status_code=answer.status_code, headers=headers,
                    media_type=answer.headers.get("content-type", "application/json"))

