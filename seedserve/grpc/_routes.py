"""Which Serve application answers a model's RPC: a pure decision over the
applications Serve reports (see ``serve_config.model_applications``: the
model's endpoint serves its default version, every other version has an
application of its own)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from seedserve.deployments.serve_config import MODEL_APP_PREFIX, model_app_name, routable, running_replicas

__all__ = ["App", "applications", "route"]


@dataclass(frozen=True)
class App:
    """A model application as Serve reports it: its status and the version it serves."""

    status: str
    version: int | None
    #: its RUNNING replicas
    replicas: int = 0

    @property
    def routable(self) -> bool:
        """Whether its RPCs go to it (see ``serve_config.routable``)."""
        return routable(self.status, self.replicas)


def applications(details: Mapping[str, Any]) -> dict[str, App]:
    """The model applications in Serve's instance details (``GET /api/serve/applications/``)."""
    apps: dict[str, App] = {}
    for name, app in (details.get("applications") or {}).items():
        if name.startswith(MODEL_APP_PREFIX):
            args = (app.get("deployed_app_config") or {}).get("args") or {}
            version = args.get("version")
            apps[name] = App(str(app.get("status")), int(version) if isinstance(version, int) else None,
                             running_replicas(app))
    return apps


def route(apps: Mapping[str, App], model: str, version: str) -> str:
    """The application for ``model`` at ``version`` ("" for the one its
    endpoint serves), whether or not it is running; a version that is not a
    number names an application that cannot exist."""
    endpoint = model_app_name(model)
    if not version or (endpoint in apps and str(apps[endpoint].version) == version):
        return endpoint
    return model_app_name(model, int(version) if version.isdigit() else -1)
