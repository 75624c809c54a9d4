"""The master deployment: what is not per model. Health, Open Inference
Protocol server metadata, JSON answers for models that are not (yet) served,
the reconciler that keeps one application per registered model, and the
registry reads and writes of model replicas (which have no database)."""

from __future__ import annotations

import asyncio
import collections
import importlib
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any

import ray
from ray import serve
from ray.serve import Application, Deployment
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from seedserve import __version__
from seedserve.codecs.v2_wire import HEADER_LENGTH
from seedserve.deployments._autocalibrate import calibrate_new_types
from seedserve.deployments._master_link import MASTER_ROUTES_PATH, ModelData
from seedserve.deployments._metrics import CONTENT_TYPE, MetricsBook, ReplicaTotals, exposition
from seedserve.deployments._query import (
    bearer_key,
    check_key,
    error_response,
    load_json,
    oip_error_response,
    public_v2_path,
    read_body,
    wrong_key_limiter,
)
from seedserve.deployments._v2_rest import EXTENSIONS
from seedserve.deployments.master_document import allowed_methods, master_document
from seedserve.deployments.reconciler import Reconciler
from seedserve.deployments.serve_api import ServeRestApi
from seedserve.deployments.serve_config import (
    MASTER_APP,
    MODEL_APP_PREFIX,
    model_app_name,
    mongo_uri_from,
    node_worker_types,
)
from seedserve.errors import InvalidInput, MethodNotAllowed, NotFound, SeedserveError, Unauthenticated, Unavailable
from seedserve.logs import REQUEST_ID_HEADER, bind_request, log_error, request_id_from
from seedserve.profiler.catalog import load_catalog
from seedserve.registry import ModelStore, connect
from seedserve.registry.key_hashes import key_matches
from seedserve.settings import Settings

__all__ = ["MASTER", "Master", "build", "route_family"]

logger = logging.getLogger("seedserve.master")

#: The master reads a /v2 body before forwarding it; the model applies its own, smaller limit.
_MAX_V2_BODY = 512 * 2**20
#: A repository index request is at most ``{"ready": true}``.
_MAX_INDEX_BODY = 4096
#: The wrong-key limiter's bucket for keys sent to the repository index.
_INDEX_BUCKET = "(repository index)"


def reconciler_health(task_done: bool, last_ok: float | None, last_error: str | None, started: float,
                      now: float, interval_s: float) -> dict[str, Any]:
    """The reconciler's health entry: ``state`` is ``ok``, ``stopped`` (its
    task ended), ``failing`` (its last pass raised) or ``stalled`` (no pass
    succeeded for ten intervals, at least 30 s, or none yet since then)."""
    stall_s = max(30.0, 10 * interval_s)
    since = last_ok if last_ok is not None else started
    if task_done:
        state = "stopped"
    elif last_error is not None:
        state = "failing"
    elif now - since > stall_s:
        state = "stalled"
    else:
        state = "ok"
    return {"state": state, "last_ok_age_s": None if last_ok is None else round(now - last_ok, 1), "error": last_error}


def route_family(path: str, known: Collection[str]) -> str:
    """The ``route`` label of a request the master answered: one of its own
    routes (``known``), a model's query path with the name left out, or ``other``."""
    if path.startswith("/v2/models/"):
        return "/v2/models/{name}"
    if path.startswith("/models/"):
        return "/models/{name}"
    return path if path in known else "other"


class Master:
    # Serve awaits an async constructor before the replica takes traffic; mypy wants __init__ to return None.
    async def __init__(self, mongo_uri: str | None, database: str, dashboard_url: str, reconcile_interval_s: float,  # type: ignore[misc]
                       token_sha256: list[str] | None = None, auto_calibrate: bool = False) -> None:
        """``mongo_uri`` None: the replica reads ``SEEDSERVE_MONGO_URI`` from its node.
        ``token_sha256``: SHA-256 of each token that may read the operational
        endpoints (/cluster, /metrics, /-/routes); none: nobody may."""
        Settings().configure_logging("master")
        self._metrics_book = MetricsBook()
        self._store = ModelStore(connect(mongo_uri_from({"mongo_uri": mongo_uri}), timeout_ms=2000)[database])
        self._token_hashes = list(token_sha256 or [])
        self._wrong_keys = wrong_key_limiter()
        self._reconciler = Reconciler(self._store, ServeRestApi(dashboard_url), interval_s=reconcile_interval_s,
                                      gpu_types=load_catalog().gpu_types())
        self._task = asyncio.get_running_loop().create_task(self._reconciler.run_forever())
        self._observing = asyncio.get_running_loop().create_task(self._reconciler.observe_forever())
        # Calibrates worker types no node has measured yet (seedserve.deployments._autocalibrate).
        self._calibrating = (asyncio.get_running_loop().create_task(self._calibrate_forever())
                             if auto_calibrate else None)
        # The first deploy imports the model server (torch: seconds): paid
        # once the master is ready, rather than when the first model registers.
        self._importing = asyncio.get_running_loop().create_task(self._import_model_server())
        self._started = time.time()
        self._interval_s = reconcile_interval_s
        self._routes: dict[str, Callable[[], Awaitable[Response]]] = {
            "/healthz": self._healthz,
            "/livez": self._live,
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
        self._known_routes = {*self._routes, *self._operator_routes, "/v2/repository/index"}
        # What this application answered, by route, for /metrics: a model's
        # /v2 query reaches it only when the model has no application of its own.
        self._answered: collections.Counter[str] = collections.Counter()

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
        # A model's /v2 path as the ingress rewrote it for the model's own
        # application, which the model does not have (unknown, deleted, not
        # served yet): answered as /v2/models/<name> is (see seedserve.cluster.haproxy).
        path = public_v2_path(request.url.path.rstrip("/") or "/")
        self._bind(request_id, path)
        if path == MASTER_ROUTES_PATH:
            path = "/-/routes"  # where the ingress sends /-/routes (see seedserve.cluster.haproxy)
        self._answered[route_family(path, self._known_routes)] += 1
        oip = path == "/v2" or path.startswith("/v2/")
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
            if path == "/v2/repository/index":
                return await self._repository_index(request)
            if path.startswith("/v2/models/"):
                return await self._v2_model(request, path, request_id)
            if oip:
                raise NotFound(f"no route {request.method} {path}; see the Open Inference Protocol's REST paths")
            return await self._not_served(request, path)
        except SeedserveError as exc:
            # /v2 answers errors in the protocol's own shape; the native paths in seedserve's.
            response = oip_error_response(exc) if oip else error_response(exc)
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

    async def _import_model_server(self) -> None:
        """Import the model server in a thread after the first reconcile pass
        (the master's readiness), so it does not slow that pass down."""
        while self._reconciler.state.last_ok is None:
            await asyncio.sleep(0.5)
        await asyncio.to_thread(importlib.import_module, "seedserve.deployments.model_server")

    async def _calibrate_forever(self, interval_s: float = 30.0) -> None:
        in_flight: set[str] = set()
        while True:
            try:
                await calibrate_new_types(self._store, in_flight=in_flight)
            except Exception:  # the database or Ray's state API is away: the next round tries again
                logger.warning("background calibration failed", exc_info=True)
            await asyncio.sleep(interval_s)

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
        """For readiness probes: 503 when the database or the reconciler is
        down, with ``down`` naming which. Open to anyone, so it names no model
        or application: a model whose application failed shows that in its own
        status (/cluster, the manager), and does not make the master unhealthy."""
        state = self._reconciler.state
        try:
            await self._store.ping()
            database = "ok"
        except Unavailable as exc:
            database = f"unavailable: {exc.message}"
        reconciler = reconciler_health(self._task.done(), state.last_ok, state.last_error, self._started, time.time(),
                                       self._interval_s)
        reconciler["deploys"] = state.deploys
        components: dict[str, Any] = {"master": "ok", "database": database, "reconciler": reconciler}
        down = [name for name, ok in (("database", database == "ok"), ("reconciler", reconciler["state"] == "ok"))
                if not ok]
        body = {"status": "degraded" if down else "ok", "version": __version__, "down": down, "components": components}
        return JSONResponse(body, status_code=503 if down else 200)

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
        return Response(exposition(self._metrics_book, replicas, self._answered), media_type=CONTENT_TYPE)

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
        # Wanted ones too: a model Serve does not run yet (its deploy failed, say) is shown.
        for app in sorted(set(state.applications) | set(state.wanted)):
            if app.startswith(MODEL_APP_PREFIX):
                model, _, version = app.removeprefix(MODEL_APP_PREFIX).partition(".v")
                entry = models.setdefault(model, {"serving": state.serving.get(model), "applications": []})
                entry["applications"].append({"version": int(version) if version else state.serving.get(model),
                                              **state.status_of(app, nodes)})
        return JSONResponse({"nodes": shown_nodes, "models": models, "applications": state.applications})

    async def _openapi(self) -> Response:
        return JSONResponse(master_document())

    async def _server_metadata(self) -> Response:
        return JSONResponse({"name": "seedserve", "version": __version__, "extensions": EXTENSIONS})

    async def _live(self) -> Response:
        return JSONResponse({"live": True})

    async def _ready(self) -> Response:
        ready = self._reconciler.state.last_ok is not None and self._reconciler.state.last_error is None
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    async def _not_served(self, request: Request, path: str, app: str | None = None, oip: bool = False) -> Response:
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
        shown = self._reconciler.state.status_of(app or model_app_name(name), await asyncio.to_thread(ray.nodes))
        status, reason = shown["status"], shown.get("reason")
        if status in ("DEPLOY_FAILED", "UNHEALTHY"):
            message = f"model {name!r} is not being served ({status}): " + (
                reason or "its replicas failed to start; its owner sees its status on the model's page in the manager")
        else:
            why = f": {reason}" if reason else "; retry in a few seconds"
            message = f"model {name!r} is starting ({status}){why}"
        starting = Unavailable(message, input="model")
        response = oip_error_response(starting) if oip else error_response(starting)
        response.headers["Retry-After"] = "2"
        return response

    async def _v2_model(self, request: Request, path: str, request_id: str) -> Response:
        """``/v2/models/{name}[/versions/{v}][/ready|/infer]`` that reached the
        master: version-pinned paths (the ingress sends the others to the
        model's own application, see seedserve.cluster.haproxy), and any for a
        model without an application Serve's ingress knows yet. Forwarded to the
        model's replica through a handle, which checks the key, or answered as
        :meth:`_not_served`."""
        parts = path.split("/")[3:]
        name, rest = parts[0], parts[1:]
        app = model_app_name(name)
        if rest[:1] == ["versions"] and len(rest) >= 2:
            version, rest = rest[1], rest[2:]
            if version != str(self._reconciler.state.serving.get(name)):
                app = model_app_name(name, int(version) if version.isdigit() else -1)
        if rest not in ([], ["ready"], ["infer"], ["stats"]):
            raise NotFound(f"no route {request.method} {path}; see the Open Inference Protocol's REST paths")
        if not self._reconciler.state.routable(app):
            return await self._not_served(request, f"/models/{name}", app, oip=True)
        handle = serve.get_app_handle(app)
        authorization = request.headers.get("authorization", "")
        if rest == ["infer"]:
            body = await read_body(request, _MAX_V2_BODY)
            answer = handle.infer_v2.remote(authorization, request.headers.get(HEADER_LENGTH), body, request_id)
        elif rest == ["ready"]:
            answer = handle.ready_v2.remote(authorization)
        elif rest == ["stats"]:
            answer = handle.stats_v2.remote(authorization)
        else:
            answer = handle.metadata_v2.remote(authorization)
        try:
            status, headers, content = await answer
        except ray.exceptions.RayError as exc:  # the replica died or was replaced meanwhile: the client may retry
            # Only a caller with one of the model's keys learns that it exists.
            check_key(name, bearer_key(request), await self._store.key_hashes(name), self._wrong_keys)
            unavailable = Unavailable(f"model {name!r}: its replica did not answer ({type(exc).__name__}); retry in a "
                                      "few seconds", input="model")
            response = oip_error_response(unavailable)
            response.headers["Retry-After"] = "2"
            return response
        return Response(content, status_code=status, headers=headers)

    async def _repository_index(self, request: Request) -> Response:
        """``POST /v2/repository/index``: the models the caller's key may
        query (a model key: its own model; the admin or metrics token: every
        model), each with the version it serves and whether that is ready.
        An anonymous caller and a key no model accepts get an empty list, so
        the index tells nobody which other tenants' models exist."""
        ready_only = _index_request(await read_body(request, _MAX_INDEX_BODY))
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        key = key.strip() if scheme.lower() == "bearer" else ""
        if not key:
            return JSONResponse([])
        operator = key_matches(key, self._token_hashes)
        docs = [doc for doc in await self._store.list()
                if operator or key_matches(key, [k["sha256"] for k in doc.get("keys", [])])]
        if not docs and not operator:
            self._wrong_keys.check(model=_INDEX_BUCKET)  # guessing keys here is limited as on the models' routes
            self._wrong_keys.failed(model=_INDEX_BUCKET)
        state = self._reconciler.state
        index = []
        for doc in docs:
            status = state.applications.get(model_app_name(doc["name"]), "NOT_STARTED")
            entry = {"name": doc["name"], "version": str(state.serving.get(doc["name"], "")),
                     "state": "READY" if status == "RUNNING" else "UNAVAILABLE",
                     "reason": "" if status == "RUNNING" else f"its application is {status}"}
            if entry["state"] == "READY" or not ready_only:
                index.append(entry)
        return JSONResponse(index)

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


def _index_request(body: bytes) -> bool:
    """Whether a repository index request asks for ready models only (an empty body asks for all)."""
    if not body.strip():
        return False
    request = load_json(body, "the repository index request")
    if not isinstance(request, dict):
        raise InvalidInput('the repository index request must be a JSON object, such as {"ready": true}')
    ready = request.get("ready", False)
    if not isinstance(ready, bool):
        raise InvalidInput(f"'ready' must be true or false, got {ready!r}", input="ready")
    return ready


#: Master as a Serve deployment (named Master): made by a call, not a class
#: decorator, so that the type checker sees a Deployment (as MODEL_SERVER).
MASTER: Deployment = serve.deployment()(Master)


def build(args: dict[str, Any]) -> Application:
    """Application builder for ``import_path: seedserve.deployments.master:build``."""
    return MASTER.bind(
        args.get("mongo_uri"), args["database"], args["dashboard_url"], float(args.get("reconcile_interval_s", 2.0)),
        list(args.get("token_sha256") or []), bool(args.get("auto_calibrate", False)),
    )
