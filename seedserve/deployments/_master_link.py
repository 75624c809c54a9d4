"""How a model replica reaches the master: what it serves comes from the
master over Ray, never from the database (the replica holds no database
address and no credential)."""

from __future__ import annotations

from typing import Any, TypedDict

from ray import serve
from ray.serve.handle import DeploymentHandle

__all__ = ["MASTER_ROUTES_PATH", "ModelData", "master_handle"]

#: Where the master answers the routes table, for a token: the ingress
#: rewrites /-/routes to it (seedserve.cluster.haproxy, which imports it
#: from here: the deployments do not import the cluster package).
MASTER_ROUTES_PATH = "/cluster/routes"

#: The master's application and its one deployment (see serve_config.MASTER_APP).
_MASTER_APP = "master"
_MASTER_DEPLOYMENT = "Master"


class ModelData(TypedDict):
    """What a replica needs to serve one version (from ``Master.model_data``)."""

    manifest: dict[str, Any]
    format: str
    #: The artifact's bytes; through Ray's object store (up to the 512 MiB artifact limit).
    artifact: bytes
    key_hashes: list[str]


def master_handle() -> DeploymentHandle[Any]:
    """A handle on the master deployment. Serve routes its calls to whichever
    master replica is running (a restarted master included) and queues them
    while none is, where a named actor of the master's would die with it and
    would have to be looked up again. No existence check: at ``seedserve up``
    the models deploy together with the master, which may not be running yet."""
    return serve.get_deployment_handle(_MASTER_DEPLOYMENT, _MASTER_APP, _check_exists=False)
