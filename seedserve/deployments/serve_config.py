"""Pure functions from the registry (desired state) to Serve application
configs: the master's, which its deployer submits declaratively, and one per
model version, which the master's reconciler deploys one by one
(:mod:`seedserve.deployments.owned_apps`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from seedserve import batch_plan, dispatch
from seedserve.codecs import Manifest
from seedserve.codecs.schema import Scaling
from seedserve.settings import Settings

__all__ = [
    "MASTER_APP",
    "HEAD_RESOURCE",
    "MASTER_MAX_ONGOING_REQUESTS",
    "MODEL_APP_PREFIX",
    "model_app_name",
    "mongo_uri_from",
    "model_applications",
    "worker_resource",
    "node_worker_types",
    "typed_nodes",
    "ray_nodes",
    "master_application",
    "model_application",
    "deploy_config",
    "actor_options",
    "pending_reason",
    "replica_failure",
    "routable",
    "running_replicas",
]

MASTER_APP = "master"
#: The resource Ray gives the head node only (ray._common.constants.HEAD_NODE_RESOURCE_NAME).
HEAD_RESOURCE = "node:__internal_head__"
MODEL_APP_PREFIX = "model-"


_WORKER_PREFIX = "worker:"


def worker_resource(worker_type: str) -> str:
    """The Ray custom resource that marks nodes of ``worker_type``."""
    return f"{_WORKER_PREFIX}{worker_type}"


def node_worker_types(node: Mapping[str, Any]) -> list[str]:
    """The worker types a Ray node (an entry of ``ray.nodes()``) advertises."""
    return sorted(r.removeprefix(_WORKER_PREFIX) for r in node.get("Resources") or {} if r.startswith(_WORKER_PREFIX))


def ray_nodes() -> list[dict[str, Any]]:
    """Ray's nodes (``ray.nodes()``, untyped in Ray) of the cluster this process is connected to."""
    import ray

    nodes: list[dict[str, Any]] = ray.nodes()
    return nodes


def typed_nodes(nodes: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Alive nodes that advertise a worker type: node id -> type."""
    return {node["NodeID"]: types[0] for node in nodes if node.get("Alive") and (types := node_worker_types(node))}


def mongo_uri_from(args: Mapping[str, Any]) -> str:
    """The master's database URI: its ``mongo_uri`` arg, else its node's
    ``SEEDSERVE_MONGO_URI`` (as the Kubernetes manifests set it from a Secret).
    Model replicas have none: they read the registry through the master."""
    uri = args.get("mongo_uri") or Settings().mongo_uri
    if not uri:
        raise ValueError("no database: give the application a mongo_uri arg or set SEEDSERVE_MONGO_URI on the Ray "
                         "nodes")
    return str(uri)


def model_app_name(model: str, version: int | None = None) -> str:
    """The application serving ``model``'s endpoint, or, given ``version``,
    the one serving that version's own route (``.`` cannot occur in a name)."""
    return MODEL_APP_PREFIX + model + ("" if version is None else f".v{version}")


#: Requests the master runs at once: queries it forwards (/v2), plus every
#: model replica's key refreshes and latency reports, which go through it.
MASTER_MAX_ONGOING_REQUESTS = 200


def master_application(
    *, mongo_uri: str | None, database: str, dashboard_url: str, reconcile_interval_s: float,
    token_sha256: Iterable[str] = (), auto_calibrate: bool = False,
) -> dict[str, Any]:
    """The master's application: health, /v2 metadata, the reconciler, and
    what model replicas read from the registry. ``token_sha256``: SHA-256 of
    each token that may read /cluster, /metrics and /-/routes (the admin
    token, the metrics token); the master never holds the tokens themselves."""
    return {
        "name": MASTER_APP,
        "route_prefix": "/",
        "import_path": "seedserve.deployments.master:build",
        "args": {
            **({"mongo_uri": mongo_uri} if mongo_uri else {}),
            "database": database,
            "dashboard_url": dashboard_url,
            "reconcile_interval_s": reconcile_interval_s,
            "token_sha256": sorted(token_sha256),
            "auto_calibrate": auto_calibrate,
        },
        # On the head: it reaches the dashboard (Serve's REST API) and an
        # embedded database there on loopback, and worker hosts hold nothing.
        "deployments": [{"name": "Master", "num_replicas": 1, "max_ongoing_requests": MASTER_MAX_ONGOING_REQUESTS,
                         "ray_actor_options": {"num_cpus": 0.05, "resources": {HEAD_RESOURCE: 0.001}}}],
    }


def model_applications(models: Iterable[Mapping[str, Any]], versions: Iterable[Mapping[str, Any]],
                       gpu_types: Mapping[str, str | None] | None = None) -> list[dict[str, Any]]:
    """The applications the registry asks for: per model, one at
    ``/models/{name}`` serving its default version (pinned, else latest), and
    one at ``/models/{name}/versions/{v}`` for each other version, scaled to
    zero while idle. Serve routes by the longest prefix, so a query for the
    default version's own route reaches the first application. ``gpu_types``:
    see :func:`actor_options`."""
    by_model: dict[str, dict[int, Mapping[str, Any]]] = {}
    for version in versions:
        by_model.setdefault(version["name"], {})[version["version"]] = version
    apps = []
    for model in models:
        available = by_model.get(model["name"], {})
        default = model.get("pinned") or model["latest"]
        if default not in available:
            continue  # a version still being written, or one already deleted
        apps.append(model_application(available[default], gpu_types=gpu_types))
        apps += [model_application(available[v], own_route=True, gpu_types=gpu_types)
                 for v in sorted(available) if v != default]
    return apps


# No line per query in Serve's access log, and Serve's own logger at WARNING
# (it formats an access line per query even when the log is off): about 4 %
# of a tiny model's replica time under load. /metrics counts queries by
# status; seedserve's own log lines are unaffected.
_REPLICA_LOGGING = {"enable_access_log": False, "log_level": "WARNING"}

def model_application(version: Mapping[str, Any], *, own_route: bool = False,
                      gpu_types: Mapping[str, str | None] | None = None) -> dict[str, Any]:
    """One version's application; its args change (and so it redeploys) when
    the version or the artifact behind a route changes. No database address
    or credential: its replicas read what they serve from the master.
    ``gpu_types``: see :func:`actor_options`."""
    manifest = Manifest.model_validate(version["manifest"])
    scaling = manifest.scaling
    options = actor_options(manifest, gpu_types or {})
    name, number = version["name"], version["version"]
    min_replicas = 0 if own_route else scaling.min_replicas
    return {
        "name": model_app_name(name, number if own_route else None),
        "route_prefix": f"/models/{name}/versions/{number}" if own_route else f"/models/{name}",
        "import_path": "seedserve.deployments.model_server:build",
        "args": {
            "name": name,
            "version": number,
            "artifact_sha256": version["artifact"]["sha256"],
            # The replica runs the model on its GPU (see ModelServer).
            **({"on_gpu": True} if "num_gpus" in options else {}),
        },
        "deployments": [
            {
                "name": "ModelServer",
                **_replicas(scaling, min_replicas, initial=max(min_replicas, 0 if own_route else 1)),
                # The replica admits queries itself (503 with Retry-After when
                # full), so Serve must pass it every query it could admit.
                # Its calls at once are not known before its warm-up: at most one per reserved CPU.
                "max_ongoing_requests": dispatch.capacity(
                    scaling.max_ongoing_requests, dispatch.batch_size(manifest.batching.max_batch_size, None),
                    1 if "num_gpus" in options else batch_plan.reserved_cpus(scaling.num_cpus),
                ) + scaling.max_queued_requests + 1,
                "logging_config": dict(_REPLICA_LOGGING),
                "ray_actor_options": options,
            }
        ],
    }



def _replicas(scaling: Scaling, min_replicas: int, *, initial: int) -> dict[str, Any]:
    """A deployment's replica count, or its autoscaling config when the count may move."""
    # A fixed number of replicas needs no autoscaler: without one the
    # controller and the replicas skip gathering load metrics.
    if min_replicas == scaling.max_replicas:
        return {"num_replicas": min_replicas}
    return {
        "autoscaling_config": {
            "min_replicas": min_replicas,
            "initial_replicas": initial,
            "max_replicas": scaling.max_replicas,
            "target_ongoing_requests": scaling.target_ongoing_requests,
            "upscale_delay_s": scaling.upscale_delay_s,
            "downscale_delay_s": scaling.downscale_delay_s,
            "look_back_period_s": scaling.metrics_window_s,
            "metrics_interval_s": max(0.5, min(scaling.metrics_window_s / 4, 10.0)),
        },
    }

def actor_options(manifest: Manifest, gpu_types: Mapping[str, str | None]) -> dict[str, Any]:
    """A replica's Ray resources. Fractional CPUs so that many models fit on
    a small node; a sliver of the worker type's resource pins replicas to its
    nodes. On a GPU type (a key of ``gpu_types``, the catalog's GPU types
    mapped to Ray's accelerator type or None) also ``scaling.gpus`` GPUs
    (unset: 1; a fraction shares one) and, when known, the accelerator type."""
    scaling = manifest.scaling
    options: dict[str, Any] = {"num_cpus": scaling.num_cpus}
    worker_type = scaling.worker_type
    if worker_type:
        options["resources"] = {worker_resource(worker_type): 0.001}
    if worker_type and worker_type in gpu_types:
        options["num_gpus"] = scaling.gpus or 1
        if accelerator := gpu_types[worker_type]:
            options["accelerator_type"] = accelerator
    return options


def pending_reason(options: Mapping[str, Any], nodes: Iterable[Mapping[str, Any]]) -> str | None:
    """Why no alive node (an entry of ``ray.nodes()``, with the resources it
    offers in all) could ever run a replica that asks for ``options``
    (its ``ray_actor_options``), or None when one could."""
    resources: Mapping[str, float] = options.get("resources") or {}
    types = [name.removeprefix(_WORKER_PREFIX) for name in resources if name.startswith(_WORKER_PREFIX)]
    kind = types[0] if types else "any worker type"  # "no node of any worker type offers ..."
    offered = [node.get("Resources") or {} for node in nodes if node.get("Alive")]
    offered = [have for have in offered if all(have.get(name, 0) >= need for name, need in resources.items())]
    if not offered:
        if not types:
            return "no Ray node is alive"
        return f"no node offers {kind}; start one with `seedserve worker join --type {kind}`"
    gpus = float(options.get("num_gpus") or 0)
    if gpus:
        offered = [have for have in offered if have.get("GPU", 0) >= gpus]
        if not offered:
            return (f"no node offers a GPU of {kind} ({gpus:g} per replica); "
                    f"join one with `seedserve worker join --type {kind} --num-gpus N`")
    if accelerator := options.get("accelerator_type"):
        offered = [have for have in offered if f"accelerator_type:{accelerator}" in have]
        if not offered:
            return f"no node of {kind} has an {accelerator} GPU (Ray resource 'accelerator_type:{accelerator}')"
    cpus = float(options.get("num_cpus") or 0)
    if not any(have.get("CPU", 0) >= cpus for have in offered):
        return f"no node of {kind} offers {cpus:g} CPU per replica"
    return None


def running_replicas(app: Mapping[str, Any]) -> int:
    """An application's RUNNING replicas, in Serve's instance details."""
    return sum(1 for deployment in (app.get("deployments") or {}).values()
               for replica in deployment.get("replicas") or [] if replica.get("state") == "RUNNING")


def routable(status: str | None, replicas: int) -> bool:
    """Whether queries go to an application: RUNNING, or serving from a
    replica through an update or an upscale (which Serve reports as DEPLOYING)."""
    return status == "RUNNING" or replicas > 0


def replica_failure(message: str) -> str:
    """What a replica raised, from a Serve deployment's status message
    ("A replica failed to start with exception... Error:" and a traceback):
    the traceback's last line without the exception's class, else the message."""
    head, found, error = message.partition("Error:\n")
    if not found:
        return message.strip()
    lines = [line.strip() for line in error.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else head.strip()
    cls, sep, text = last.partition(": ")
    return text if sep and " " not in cls else last


def deploy_config(
    http_options: Mapping[str, Any],
    master_app: Mapping[str, Any],
    model_apps: Iterable[Mapping[str, Any]],
    *,
    proxy_location: str = "HeadOnly",
) -> dict[str, Any]:
    """A full ``ServeDeploySchema`` body: the master first, then
    ``model_apps`` (none from ``seedserve up``: the master's reconciler
    deploys the models, each on its own, outside the declarative list).

    The ingress runs on the head node only by default: a second node on the
    same machine (``seedserve worker join``) would otherwise try to bind the
    master's port.
    """
    return {
        "proxy_location": proxy_location,
        "http_options": dict(http_options),
        "applications": [dict(master_app), *(dict(app) for app in model_apps)],
    }
