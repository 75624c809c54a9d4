"""The master deployment: what is not per model. Health, Open Inference
Protocol server metadata, JSON answers for models that are not (yet) served,
the reconciler that keeps one application per registered model, and the
registry reads and writes of model replicas (which have no database)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import ray
from ray import serve
from ray.serve import Application
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from seedserve import __version__
from seedserve.codecs.oip import HEADER_LENGTH
from seedserve.deployments._master_link import MASTER_ROUTES_PATH, ModelData
from seedserve.deployments._query import bearer_key, check_key, error_response, read_body, wrong_key_limiter
from seedserve.deployments.reconciler import Reconciler
from seedserve.deployments.serve_api import ServeRestApi
from seedserve.deployments._metrics import CONTENT_TYPE, MetricsBook, ReplicaTotals, exposition
from seedserve.deployments.openapi import allowed_methods, master_document
from seedserve.deployments.serve_config import MASTER_APP, MODEL_APP_PREFIX, model_app_name, mongo_uri_from, node_worker_types
from seedserve.errors import MethodNotAllowed, NotFound, SeedserveError, Unauthenticated, Unavailable
from seedserve.registry import ModelStore, connect
from seedserve.logs import REQUEST_ID_HEADER, bind_request, log_error, request_id_from
from seedserve.registry.keys import key_matches
from seedserve.settings import Settings

__all__ = ["Master", "build"]

#: The master reads a /v2 body before forwarding it; the model applies its own, smaller limit.
_MAX_V2_BODY = 512 * 2**20


@serve.deployment
class Master:
    async def __init__(self, mongo_uri: str | None, database: str, dashboard_url: str, reconcile_interval_s: float,
                       token_sha256: list[str] | None = None) -> None:
        """``mongo_uri`` None: the replica reads ``SEEDSERVE_MONGO_URI`` from its node.
        ``token_sha256``: SHA-256 of each token that may read the operational
        endpoints (/cluster, /metrics, /-/routes); none: nobody may."""
        Settings().configure_logging("master")
        self._metrics_book = MetricsBook()
        self._store = ModelStore(connect(mongo_uri_from({"mongo_uri": mongo_uri}), timeout_ms=2000)[database])
        self._token_hashes = list(token_sha256 or [])
        self._wrong_keys = wrong_key_limiter()
        self._reconciler = Reconciler(self._store, ServeRestApi(dashboard_url), interval_s=reconcile_interval_s)
        self._task = asyncio.get_running_loop().create_task(self._reconciler.run_forever())
        self._routes: dict[str, Callable[[], Awaitable[Response]]] = {
            "/healthz": self._healthz,
            "/v2": self._server_metadata,
            "/v2/health/live": self._live,
            "/v2/health/ready": self._ready,
            "/openapi.json": self._openapi,
        }
        self._operator_routes: dict[str, Callable[[], Awaitable[Response]]] = {
            "/metrics": self._metrics,
            "/cluster": self._cluster,
            "/-/routes": self._serve_routes,
        }

    async def __call__(self, request: Request) -> Response:
        # Serve's ingress puts the request id on the answer (see seedserve.logs).
        return await self._answer(request, request_id_from(request.headers.get(REQUEST_ID_HEADER)))

    def _bind(self, request_id: str, path: str) -> None:
        """The request's id, and the model and version its path names (if any), on its log lines."""
        parts = path.strip("/").split("/")
        model = parts[2] if parts[:2] == ["v2", "models"] and len(parts) > 2 else (
            parts[1] if parts[0] == "models" and len(parts) > 1 else None)
        version = None
        if model is not None:
            pinned = parts[parts.index("versions") + 1] if "versions" in parts[:-1] else None
            version = int(pinned) if pinned and pinned.isdigit() else self._reconciler.state.serving.get(model)
        bind_request(request_id, model, version)

    async def _answer(self, request: Request, request_id: str) -> Response:
        path = request.url.path.rstrip("/") or "/"
        self._bind(request_id, path)
        if path == MASTER_ROUTES_PATH:
            path = "/-/routes"  # where the ingress sends /-/routes (see seedserve.cluster.haproxy)
        try:
            allowed = allowed_methods(path)
            if allowed is not None and request.method not in allowed:
                raise MethodNotAllowed.on(request.method, path, allowed)
            handler = self._routes.get(path)
            if handler is not None:
                return await handler()
            handler = self._operator_routes.get(path)
            if handler is not None:
                self._check_operator(request)
                return await handler()
            if path.startswith("/v2/models/"):
                return await self._v2_model(request, path, request_id)
            return await self._not_served(request, path)
        except SeedserveError as exc:
            response = error_response(exc)
            log_error(response.status_code, exc.code, exc.message, exc.input)
            return response

    # What model replicas read from the registry, through a handle (see
    # _master_link): the master is the only Ray process with a database.

    async def model_data(self, name: str, version: int) -> ModelData:
        """What a replica of ``name``'s ``version`` serves: manifest, artifact, key hashes."""
        stored = await self._store.get_version(name, version)
        artifact = await self._store.read_artifact(stored["artifact"]["file_id"])
        return ModelData(manifest=dict(stored["manifest"]), format=stored["artifact"]["format"], artifact=artifact,
                         key_hashes=await self._store.key_hashes(name))

    async def key_hashes(self, name: str) -> list[str]:
        """The model's current key hashes (empty once it is deleted)."""
        return await self._store.key_hashes(name)

    async def record_metrics(self, name: str, version: int, replica: str, totals: ReplicaTotals) -> None:
        """A model replica's totals so far, for /metrics."""
        self._metrics_book.record(name, version, replica, totals)

    async def record_measured(self, name: str, version: int, worker_type: str, stats: dict[str, float]) -> None:
        """A replica's measured call latency, into the version's registry entry."""
        await self._store.record_measured(name, version, worker_type, stats)

    def _check_operator(self, request: Request) -> None:
        """The operational endpoints need the admin or the metrics token; only
        their SHA-256 is here, compared in constant time (as model keys are)."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip() or not key_matches(token.strip(), self._token_hashes):
            raise Unauthenticated(
                "/metrics, /cluster and /-/routes need the admin token or the metrics token as "
                "'Authorization: Bearer <token>'",
                input="authorization",
            )

    async def _healthz(self) -> Response:
        """Open for probes, so it names no model or application (those are on /cluster)."""
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
        }
        healthy = database == "ok" and state.last_error is None
        return JSONResponse({"status": "ok" if healthy else "degraded", "components": components})

    async def _metrics(self) -> Response:
        """Prometheus text: what the model replicas reported (see
        :mod:`seedserve.deployments._metrics`), per model version, and the
        replicas each version runs (from Serve)."""
        state = self._reconciler.state
        replicas: dict[tuple[str, int], int] = {}
        for app, count in state.replicas.items():
            if app.startswith(MODEL_APP_PREFIX):
                model, _, version = app.removeprefix(MODEL_APP_PREFIX).partition(".v")
                number = int(version) if version.isdigit() else state.serving.get(model)
                if number is not None:
                    replicas[model, number] = count
        if state.last_ok is not None:  # the registry has been read: a model not in it was deleted, its series go
            for model in self._metrics_book.models() - set(state.serving):
                self._metrics_book.forget(model)
        return Response(exposition(self._metrics_book, replicas), media_type=CONTENT_TYPE)

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
        return JSONResponse({"nodes": shown_nodes, "models": models, "applications": state.applications})

    async def _openapi(self) -> Response:
        return JSONResponse(master_document())

    async def _server_metadata(self) -> Response:
        return JSONResponse({"name": "seedserve", "version": __version__, "extensions": []})

    async def _live(self) -> Response:
        return JSONResponse({"live": True})

    async def _ready(self) -> Response:
        ready = self._reconciler.state.last_ok is not None and self._reconciler.state.last_error is None
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    async def _not_served(self, request: Request, path: str, app: str | None = None) -> Response:
        """A query for a model Serve does not route (yet): unknown, deleted,
        starting, or a version not served. Only a caller with one of the
        model's keys learns which; anyone else hears what a wrong key hears
        from the model's replica (:func:`not_accepted`)."""
        parts = path.strip("/").split("/")
        if len(parts) < 2 or parts[0] != "models":
            raise NotFound(f"no route {path}; queries go to POST /models/<name>/predict")
        name = parts[1]
        check_key(name, bearer_key(request), await self._store.key_hashes(name), self._wrong_keys)
        if app is not None and app != model_app_name(name) and app not in self._reconciler.state.applications:
            version = app.rpartition(".v")[2]
            raise NotFound(
                f"model {name!r} has no version {version} being served; list them with GET /api/models/{name}/versions",
                input="version",
            )
        status = self._reconciler.state.applications.get(app or model_app_name(name), "NOT_STARTED")
        response = error_response(Unavailable(f"model {name!r} is starting ({status}); retry in a few seconds", input="model"))
        response.headers["Retry-After"] = "2"
        return response

    async def _v2_model(self, request: Request, path: str, request_id: str) -> Response:
        """``/v2/models/{name}[/versions/{v}][/ready|/infer]``, forwarded to the model's
        replica through a handle (Serve routes one prefix per application, and the
        native ``/models/{name}`` path owns the model's single hop). The replica
        checks the key, as it does for native queries."""
        parts = path.split("/")[3:]
        name, rest = parts[0], parts[1:]
        app = model_app_name(name)
        if rest[:1] == ["versions"] and len(rest) >= 2:
            version, rest = rest[1], rest[2:]
            if version != str(self._reconciler.state.serving.get(name)):
                app = model_app_name(name, int(version) if version.isdigit() else -1)
        if rest not in ([], ["ready"], ["infer"]):
            raise NotFound(f"no route {request.method} {path}; see the Open Inference Protocol's REST paths")
        if self._reconciler.state.applications.get(app) != "RUNNING":
            return await self._not_served(request, f"/models/{name}", app)
        handle = serve.get_app_handle(app)
        authorization = request.headers.get("authorization", "")
        if rest == ["infer"]:
            body = await read_body(request, _MAX_V2_BODY)
            answer = handle.infer_v2.remote(authorization, request.headers.get(HEADER_LENGTH), body, request_id)
        elif rest == ["ready"]:
            answer = handle.ready_v2.remote(authorization)
        else:
            answer = handle.metadata_v2.remote(authorization)
        status, headers, content = await answer
        return Response(content, status_code=status, headers=headers)

    async def _serve_routes(self) -> Response:
        """What Serve's proxy would answer at ``/-/routes`` (route prefix ->
        application), for token holders only: on the public port the proxy's
        own answer is switched off (see seedserve.cluster.haproxy) and the
        request reaches this application at MASTER_ROUTES_PATH."""
        routes = {"/": MASTER_APP}
        for app in sorted(self._reconciler.state.applications):
            if app.startswith(MODEL_APP_PREFIX):
                model, _, version = app.removeprefix(MODEL_APP_PREFIX).partition(".v")
                routes[f"/models/{model}" + (f"/versions/{version}" if version else "")] = app
        return JSONResponse(routes)

    def check_health(self) -> None:
        if self._task.done():
            raise RuntimeError("the reconciler stopped") from self._task.exception()


def build(args: dict[str, Any]) -> Application:
    """Application builder for ``import_path: seedserve.deployments.master:build``."""
    return Master.bind(
        args.get("mongo_uri"), args["database"], args["dashboard_url"], float(args.get("reconcile_interval_s", 2.0)),
        list(args.get("token_sha256") or []),
    )
