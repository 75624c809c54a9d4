"""Pure functions from the registry (desired state) to a Serve deploy config.

A declarative deploy replaces the whole list of applications, so every config
built here holds the master together with one application per registered
model. Comparison with what Serve runs looks only at what we set.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from seedserve.codecs import Manifest

__all__ = [
    "MASTER_APP",
    "MODEL_APP_PREFIX",
    "model_app_name",
    "master_application",
    "model_application",
    "deploy_config",
    "model_apps_differ",
    "deployed_configs",
]

MASTER_APP = "master"
MODEL_APP_PREFIX = "model-"
_COMPARED = ("name", "route_prefix", "import_path", "args")


def model_app_name(model: str) -> str:
    return MODEL_APP_PREFIX + model


def master_application(*, mongo_uri: str, database: str, dashboard_url: str, reconcile_interval_s: float) -> dict[str, Any]:
    """The master's application: health, /v2 metadata, and the reconciler."""
    return {
        "name": MASTER_APP,
        "route_prefix": "/",
        "import_path": "seedserve.deployments.master:build",
        "args": {
            "mongo_uri": mongo_uri,
            "database": database,
            "dashboard_url": dashboard_url,
            "reconcile_interval_s": reconcile_interval_s,
        },
        "deployments": [{"name": "Master", "num_replicas": 1, "ray_actor_options": {"num_cpus": 0.05}}],
    }


def model_application(doc: Mapping[str, Any], *, mongo_uri: str, database: str) -> dict[str, Any]:
    """One model's application; its args change (and so it redeploys) when the
    version or the artifact changes."""
    manifest = Manifest.model_validate(doc["manifest"])
    scaling = manifest.scaling
    return {
        "name": model_app_name(doc["name"]),
        "route_prefix": f"/models/{doc['name']}",
        "import_path": "seedserve.deployments.model_server:build",
        "args": {
            "name": doc["name"],
            "version": doc["version"],
            "artifact_sha256": doc["artifact"]["sha256"],
            "mongo_uri": mongo_uri,
            "database": database,
        },
        "deployments": [
            {
                "name": "ModelServer",
                "autoscaling_config": {
                    "min_replicas": scaling.min_replicas,
                    "initial_replicas": max(scaling.min_replicas, 1),
                    "max_replicas": scaling.max_replicas,
                    "target_ongoing_requests": scaling.target_ongoing_requests,
                },
                # Fractional CPUs so that many models fit on a small node.
                "ray_actor_options": {"num_cpus": scaling.num_cpus},
            }
        ],
    }


def deploy_config(
    http_options: Mapping[str, Any], master_app: Mapping[str, Any], model_apps: Iterable[Mapping[str, Any]]
) -> dict[str, Any]:
    """A full ``ServeDeploySchema`` body: the master first, then every model."""
    return {
        "http_options": dict(http_options),
        "applications": [dict(master_app), *(dict(app) for app in model_apps)],
    }


def deployed_configs(details: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Application name -> deployed config, from Serve's instance details.

    Applications being deleted still show up (status ``DELETING``); they count
    as gone, or every pass would see a difference and resubmit the config,
    and each resubmission restarts the build of applications still deploying.
    """
    applications: Mapping[str, Any] = details.get("applications") or {}
    return {
        name: dict(app.get("deployed_app_config") or {})
        for name, app in applications.items()
        if app.get("status") != "DELETING"
    }


def model_apps_differ(desired: Iterable[Mapping[str, Any]], deployed: Mapping[str, Mapping[str, Any]]) -> bool:
    """Whether the model applications Serve runs differ from the desired ones.

    ``deployed`` maps application name to its deployed config (as Serve's REST
    API reports it); the master's entry is ignored.
    """
    want = {app["name"]: _key(app) for app in desired}
    have = {name: _key(app) for name, app in deployed.items() if name.startswith(MODEL_APP_PREFIX)}
    return want != have


def _key(app: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(repr(app.get(field)) for field in _COMPARED)
