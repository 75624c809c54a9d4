"""Level-triggered reconciliation: MongoDB's registry is the desired state,
Serve's applications the actual one. Each pass reads both and deploys or
deletes, one by one, only the model applications that differ (see
:mod:`seedserve.deployments.owned_apps`); every other application, the
master included, is left as it is."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from seedserve.deployments.owned_apps import ServeApps, plan_changes
from seedserve.deployments.serve_api import ServeRestApi
from seedserve.deployments.serve_config import (
    model_applications,
    pending_reason,
    replica_failure,
    routable,
    running_replicas,
)
from seedserve.registry import ModelStore, default_version

__all__ = ["Reconciler", "ReconcilerState"]

logger = logging.getLogger("seedserve.reconciler")


@dataclass
class ReconcilerState:
    """What the last passes saw, for health reports."""

    passes: int = 0
    deploys: int = 0
    last_ok: float | None = None
    last_error: str | None = None
    applications: dict[str, str] = field(default_factory=dict)
    replicas: dict[str, int] = field(default_factory=dict)
    registered: set[str] = field(default_factory=set)
    #: model -> the version its endpoint serves
    serving: dict[str, int] = field(default_factory=dict)
    #: application -> what Serve says of it when it is not running (a replica's error, say)
    messages: dict[str, str] = field(default_factory=dict)
    #: model application -> the ray_actor_options of its replicas
    wanted: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: model application -> why the last attempt to deploy or delete it failed
    failed: dict[str, str] = field(default_factory=dict)

    def routable(self, app: str) -> bool:
        """Whether queries for ``app`` go to it (see ``serve_config.routable``)."""
        return routable(self.applications.get(app), self.replicas.get(app, 0))

    def status_of(self, app: str, nodes: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        """A model application's status, replicas and, when it is not
        running, why. PENDING when no node of ``nodes`` (``ray.nodes()``)
        could ever run its replicas: a GPU model never runs on a CPU instead."""
        replicas = self.replicas.get(app, 0)
        if app in self.failed:  # Serve refused the deploy itself
            return {"status": "DEPLOY_FAILED", "replicas": replicas, "reason": self.failed[app]}
        reason = pending_reason(self.wanted[app], nodes) if app in self.wanted and not replicas else None
        if reason is not None:
            return {"status": "PENDING", "replicas": 0, "reason": reason}
        status = self.applications.get(app, "NOT_STARTED")
        message = self.messages.get(app) if status != "RUNNING" else None
        return {"status": status, "replicas": replicas, **({"reason": message} if message else {})}


class Reconciler:
    def __init__(self, store: ModelStore, api: ServeRestApi, *, interval_s: float,
                 gpu_types: Mapping[str, str | None] | None = None, apps: ServeApps | None = None,
                 notice_s: float = 0.25) -> None:
        """``api`` reads Serve's state, ``apps`` changes it (one application
        at a time). ``gpu_types``: the catalog's GPU worker types (see
        serve_config.actor_options). Between passes, every ``notice_s``, the
        registry's serving marker is read: a registration, pin or delete
        starts the next pass at once instead of up to ``interval_s`` later."""
        self._store = store
        self._gpu_types = dict(gpu_types or {})
        self._api = api
        self._apps = apps or ServeApps()
        self._interval_s = interval_s
        self._notice_s = notice_s
        self.state = ReconcilerState()

    async def reconcile_once(self) -> bool:
        """One pass; returns whether it changed any application. A model whose
        deploy fails is marked failed on its own (``state.failed``); the others
        still converge and the pass itself succeeds."""
        docs = await self._store.list()
        versions = await self._store.versions()
        details = await self._api.details()
        self._observe(details)
        self.state.registered = {doc["name"] for doc in docs}
        self.state.serving = {doc["name"]: default_version(doc) for doc in docs}
        desired = model_applications(docs, versions, self._gpu_types)
        self.state.wanted = {app["name"]: app["deployments"][0]["ray_actor_options"] for app in desired}
        self.state.failed = {name: why for name, why in self.state.failed.items() if name in self.state.wanted}
        changes = plan_changes(desired, details)
        for app in changes.deploy:
            await self._change(app["name"], self._apps.deploy(app))
        for name in changes.delete:
            await self._change(name, self._apps.delete(name))
        if changes.deploy or changes.delete:
            self.state.deploys += 1
            logger.info("deployed %d and deleted %d model application(s)", len(changes.deploy), len(changes.delete))
        return bool(changes.deploy or changes.delete)

    def _observe(self, details: Mapping[str, Any]) -> None:
        """Each application's status, running replicas and, when it is not running, Serve's message."""
        applications: dict[str, Any] = details.get("applications") or {}
        self.state.applications = {name: str(app.get("status")) for name, app in applications.items()}
        self.state.replicas = {name: running_replicas(app) for name, app in applications.items()}
        self.state.messages = {name: message for name, app in applications.items()
                               if app.get("status") != "RUNNING" and (message := _message(app))}

    async def _change(self, app: str, change: Awaitable[None]) -> None:
        """Run one application's change; a failure is that application's, not the pass's."""
        try:
            await change
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Serve refused this one; the next pass retries it
            self.state.failed[app] = f"{type(exc).__name__}: {exc}"
            logger.warning("could not change application %s: %s", app, self.state.failed[app])
        else:
            self.state.failed.pop(app, None)

    async def observe_forever(self) -> None:
        """Read Serve's applications every interval, between passes too: a
        pass that deploys can take many seconds, and queries are routed by
        what was observed last."""
        while True:
            try:
                self._observe(await self._api.details())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the next read retries; the pass reports Serve being down
                logger.debug("reading Serve's applications failed: %s", exc)
            await asyncio.sleep(self._interval_s)

    async def _marker(self) -> list[tuple[str, int, int | None]] | None:
        try:
            return await self._store.serving_marker()
        except asyncio.CancelledError:
            raise
        except Exception:  # the database is away: the pass reports it
            return None

    async def _until_due_or_changed(self, marker: list[tuple[str, int, int | None]] | None) -> None:
        """Sleep until the next pass is due, or until the registry's serving marker differs from ``marker``."""
        deadline = time.monotonic() + self._interval_s
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(self._notice_s, left))
            if marker is not None and (now := await self._marker()) is not None and now != marker:
                return

    async def run_forever(self) -> None:
        while True:
            # Read before the pass: a change during it starts the next one.
            marker = await self._marker()
            try:
                await self.reconcile_once()
                self.state.last_ok = time.time()
                self.state.last_error = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep converging: the next pass retries
                self.state.last_error = f"{type(exc).__name__}: {exc}"
                logger.warning("reconcile pass failed: %s", self.state.last_error)
            self.state.passes += 1
            await self._until_due_or_changed(marker)


def _message(app: Mapping[str, Any]) -> str:
    """A failing deployment's own message (a replica's error), else the application's."""
    for deployment in (app.get("deployments") or {}).values():
        if deployment.get("status") != "HEALTHY" and deployment.get("message"):
            return replica_failure(str(deployment["message"]))
    return str(app.get("message") or "")
