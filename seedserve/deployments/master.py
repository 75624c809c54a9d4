"""The master deployment: what is not per model. Health, Open Inference
Protocol server metadata, JSON answers for models that are not (yet) served,
and the reconciler that keeps one application per registered model."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import ray
from ray import serve
from ray.serve import Application
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from seedserve import __version__
from seedserve.codecs.oip import HEADER_LENGTH
from seedserve.deployments._query import error_response, read_body
from seedserve.deployments.reconciler import Reconciler
from seedserve.deployments.serve_api import ServeRestApi
from seedserve.deployments._metrics import gather, node_metric_urls
from seedserve.deployments.openapi import allowed_methods, master_document
from seedserve.deployments.serve_config import MODEL_APP_PREFIX, model_app_name, mongo_uri_from, node_worker_types
from seedserve.errors import MethodNotAllowed, NotFound, SeedserveError, Unavailable
from seedserve.registry import ModelStore, connect

__all__ = ["Master", "build"]

#: The master reads a /v2 body before forwarding it; the model applies its own, smaller limit.
_MAX_V2_BODY = 512 * 2**20


@serve.deployment
class Master:
    async def __init__(self, mongo_uri: str | None, database: str, dashboard_url: str, reconcile_interval_s: float) -> None:
        """``mongo_uri`` None: every replica reads ``SEEDSERVE_MONGO_URI`` from its node."""
        self._store = ModelStore(connect(mongo_uri_from({"mongo_uri": mongo_uri}), timeout_ms=2000)[database])
        self._reconciler = Reconciler(
            self._store,
            ServeRestApi(dashboard_url),
            mongo_uri=mongo_uri,
            database=database,
            interval_s=reconcile_interval_s,
        )
        self._task = asyncio.get_running_loop().create_task(self._reconciler.run_forever())
        self._routes = {
            "/healthz": self._healthz,
            "/v2": self._server_metadata,
            "/v2/health/live": self._live,
            "/v2/health/ready": self._ready,
            "/metrics": self._metrics,
            "/cluster": self._cluster,
            "/openapi.json": self._openapi,
        }

    async def __call__(self, request: Request) -> Response:
        path = request.url.path.rstrip("/") or "/"
        try:
            allowed = allowed_methods(path)
            if allowed is not None and request.method not in allowed:
                raise MethodNotAllowed.on(request.method, path, allowed)
            handler = self._routes.get(path)
            if handler is not None:
                return await handler()
            if path.startswith("/v2/models/"):
                return await self._v2_model(request, path)
            return await self._not_served(path)
        except SeedserveError as exc:
            return error_response(exc)

    async def _healthz(self) -> Response:
        state = self._reconciler.state
        try:
            await self._store.ping()
            database = "ok"
        except Unavailable as exc:
            database = f"unavailable: {exc.message}"
        components = {
            "master": "ok",
            "database": database,
            "reconciler": {
                "last_ok_age_s": None if state.last_ok is None else round(time.time() - state.last_ok, 1),
                "error": state.last_error,
                "deploys": state.deploys,
            },
            "applications": state.applications,
        }
        healthy = database == "ok" and state.last_error is None
        return JSONResponse({"status": "ok" if healthy else "degraded", "components": components})

    async def _metrics(self) -> Response:
        """Prometheus text: every model replica's metrics from every node's Ray
        metrics agent, plus the replicas each model runs (from Serve)."""
        nodes = await asyncio.to_thread(ray.nodes)
        replicas = ["# HELP seedserve_replicas Running replicas per model.", "# TYPE seedserve_replicas gauge"]
        for app, count in sorted(self._reconciler.state.replicas.items()):
            if app.startswith(MODEL_APP_PREFIX):
                model, _, version = app.removeprefix(MODEL_APP_PREFIX).partition(".v")
                version = version or str(self._reconciler.state.serving.get(model, ""))
                replicas.append(f'seedserve_replicas{{model="{model}",version="{version}"}} {count}')
        text = await gather(node_metric_urls(nodes), replicas)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    async def _cluster(self) -> Response:
        """Nodes (worker types, resources) and each model application's status
        and replicas, for the manager's dashboard."""
        nodes = await asyncio.to_thread(ray.nodes)
        state = self._reconciler.state
        shown_nodes = [
            {
                "id": node["NodeID"][:12],
                "address": node["NodeManagerAddress"],
                "alive": bool(node["Alive"]),
                "worker_types": node_worker_types(node),
                "resources": {k: v for k, v in sorted(node["Resources"].items()) if not k.startswith("node:")},
            }
            for node in nodes
        ]
        models: dict[str, dict[str, Any]] = {}
        for app, status in sorted(state.applications.items()):
            if app.startswith(MODEL_APP_PREFIX):
                model, _, version = app.removeprefix(MODEL_APP_PREFIX).partition(".v")
                entry = models.setdefault(model, {"serving": state.serving.get(model), "applications": []})
                entry["applications"].append({"version": int(version) if version else state.serving.get(model),
                                              "status": status, "replicas": state.replicas.get(app, 0)})
        return JSONResponse({"nodes": shown_nodes, "models": models})

    async def _openapi(self) -> Response:
        return JSONResponse(master_document())

    async def _server_metadata(self) -> Response:
        return JSONResponse({"name": "seedserve", "version": __version__, "extensions": []})

    async def _live(self) -> Response:
        return JSONResponse({"live": True})

    async def _ready(self) -> Response:
        ready = self._reconciler.state.last_ok is not None and self._reconciler.state.last_error is None
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    async def _not_served(self, path: str, app: str | None = None) -> Response:
        parts = path.strip("/").split("/")
        if len(parts) >= 2 and parts[0] == "models":
            name = parts[1]
            if app is not None and app != model_app_name(name) and app not in self._reconciler.state.applications:
                version = app.rpartition(".v")[2]
                return error_response(NotFound(
                    f"model {name!r} has no version {version} being served; list them with GET /api/models/{name}/versions",
                    input="version",
                ))
            if name in self._reconciler.state.registered or await self._store.exists(name):
                status = self._reconciler.state.applications.get(app or model_app_name(name), "NOT_STARTED")
                exc = Unavailable(f"model {name!r} is starting ({status}); retry in a few seconds", input="model")
                response = error_response(exc)
                response.headers["Retry-After"] = "2"
                return response
            return error_response(NotFound(f"no model named {name!r} is registered", input="model"))
        return error_response(NotFound(f"no route {path}; queries go to POST /models/<name>/predict"))

    async def _v2_model(self, request: Request, path: str) -> Response:
        """``/v2/models/{name}[/versions/{v}][/ready|/infer]``, forwarded to the model's
        replica through a handle (Serve routes one prefix per application, and the
        native ``/models/{name}`` path owns the model's single hop)."""
        parts = path.split("/")[3:]
        name, rest = parts[0], parts[1:]
        app = model_app_name(name)
        if rest[:1] == ["versions"] and len(rest) >= 2:
            version, rest = rest[1], rest[2:]
            if version != str(self._reconciler.state.serving.get(name)):
                app = model_app_name(name, int(version) if version.isdigit() else -1)
        if self._reconciler.state.applications.get(app) != "RUNNING":
            return await self._not_served(f"/models/{name}", app)
        handle = serve.get_app_handle(app)
        if rest == ["infer"] and request.method == "POST":
            body = await read_body(request, _MAX_V2_BODY)
            status, headers, content = await handle.infer_v2.remote(
                request.headers.get("authorization", ""), request.headers.get(HEADER_LENGTH), body
            )
            return Response(content, status_code=status, headers=headers)
        if rest == ["ready"] and request.method == "GET":
            return JSONResponse({"name": name, "ready": True})
        if not rest and request.method == "GET":
            return JSONResponse(await handle.metadata_v2.remote())
        raise NotFound(f"no route {request.method} {path}; see the Open Inference Protocol's REST paths")

    def check_health(self) -> None:
        if self._task.done():
            raise RuntimeError("the reconciler stopped") from self._task.exception()


def build(args: dict[str, Any]) -> Application:
    """Application builder for ``import_path: seedserve.deployments.master:build``."""
    return Master.bind(
        args.get("mongo_uri"), args["database"], args["dashboard_url"], float(args.get("reconcile_interval_s", 2.0))
    )
