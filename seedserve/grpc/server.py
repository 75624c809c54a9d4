"""The KServe v2 ``GRPCInferenceService``, served beside Ray Serve.

Ray Serve's own gRPC proxy routes a call by an ``application`` metadata key
and by the method's name; KServe's clients send neither (the model's name is
inside the request message), so this service reads the message and calls the
model's ingress replica through a Serve handle: one Ray hop, as an HTTP query
through HAProxy. It runs no user code and holds no secret: the model's
replica checks the key (``authorization: Bearer <key>`` metadata, as on
HTTP); for a model that is not being served the master's key hashes are read
through its handle, so an unknown model and a wrong key hear the same answer.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias, TypeVar

import grpc
from ray import serve
from ray.serve.handle import DeploymentHandle

from seedserve import __version__
from seedserve.deployments._master_link import master_handle
from seedserve.deployments._query import bearer_key_from, check_key, wrong_key_limiter
from seedserve.deployments.serve_api import ServeRestApi
from seedserve.deployments.serve_config import MASTER_APP
from seedserve.errors import NotFound, SeedserveError, Unavailable
from seedserve.grpc import grpc_predict_v2_pb2 as pb
from seedserve.grpc import grpc_predict_v2_pb2_grpc as pb_grpc
from seedserve.grpc._convert import infer_request_body, infer_response, metadata_response
from seedserve.grpc._routes import App, applications, route
from seedserve.grpc._status import error_details, local_error

__all__ = ["InferenceService", "serve_forever"]

logger = logging.getLogger("seedserve.grpc")

T = TypeVar("T")
#: Every RPC's context (typed by types-grpcio; subscripted only for the checker).
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
Rpc = Callable[["InferenceService", Any, Context], Awaitable[T]]

#: The ingress deployment of every model application (serve_config.model_application).
_INGRESS = "ModelServer"


class _Answered(Exception):
    """The replica answered an error (status, headers, body): passed on as is."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        super().__init__(status)
        self.parts = (status, headers, body)


def _rpc(method: Rpc[T]) -> Rpc[T]:
    """Every error of an RPC in gRPC's shape: seedserve's errors and the
    replica's error answers with their code and message; a failure of Ray
    itself (a replica that died mid-call) as UNAVAILABLE."""

    @functools.wraps(method)
    async def wrapper(self: InferenceService, request: Any, context: Context) -> T:
        try:
            return await method(self, request, context)
        except SeedserveError as exc:
            code, message, trailers = local_error(exc)
        except _Answered as exc:
            code, message, trailers = error_details(*exc.parts)
        except Exception as exc:
            logger.warning("%s failed in Ray", method.__name__, exc_info=True)
            code, message, trailers = local_error(Unavailable(
                f"the model's replica could not answer ({type(exc).__name__}); retry in a few seconds"))
        context.set_trailing_metadata(trailers)
        await context.abort(code, message)
        raise AssertionError("unreachable: abort raises")

    return wrapper


class InferenceService(pb_grpc.GRPCInferenceServiceServicer):
    """Each RPC on the model's replica (``ModelServer.infer_v2``,
    ``metadata_v2``, ``ready_v2``). Which applications run comes from
    Serve's REST API, read every ``refresh_s``."""

    def __init__(self, serve_api: ServeRestApi, refresh_s: float = 1.0) -> None:
        self._serve_api = serve_api
        self._refresh_s = refresh_s
        self._apps: dict[str, App] = {}
        self._master_running = False
        self._handles: dict[str, DeploymentHandle[Any]] = {}
        self._master = master_handle()
        self._wrong_keys = wrong_key_limiter()

    async def refresh(self) -> None:
        details = await self._serve_api.details()
        self._apps = applications(details)
        master = (details.get("applications") or {}).get(MASTER_APP) or {}
        self._master_running = master.get("status") == "RUNNING"

    async def refresh_forever(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception as exc:  # Ray's dashboard restarting: keep the last view
                logger.warning("could not read Serve's applications: %s", exc)
            await asyncio.sleep(self._refresh_s)

    async def ServerLive(self, request: pb.ServerLiveRequest, context: Context) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: pb.ServerReadyRequest, context: Context) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._master_running)

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: Context
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name="seedserve", version=__version__, extensions=[])

    @_rpc
    async def ModelReady(self, request: pb.ModelReadyRequest, context: Context) -> pb.ModelReadyResponse:
        try:
            await self._call(context, request.name, request.version, "ready_v2")
        except Unavailable:  # a model of the caller's that is starting
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=True)

    @_rpc
    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: Context
    ) -> pb.ModelMetadataResponse:
        _, body = await self._call(context, request.name, request.version, "metadata_v2")
        return metadata_response(body)

    @_rpc
    async def ModelInfer(self, request: pb.ModelInferRequest, context: Context) -> pb.ModelInferResponse:
        header_length, body = infer_request_body(request)
        headers, answer = await self._call(context, request.model_name, request.model_version, "infer_v2",
                                           header_length, body)
        return infer_response(headers, answer)

    async def _call(self, context: Context, model: str, version: str, method: str,
                    *args: Any) -> tuple[dict[str, str], bytes]:
        """``method`` on the replica serving ``model`` at ``version``: its
        headers and body, or its error answer raised as :class:`_Answered`."""
        metadata = {key: value for key, value in context.invocation_metadata() or ()}
        authorization = str(metadata.get("authorization", ""))
        app = route(self._apps, model, version)
        state = self._apps.get(app)
        if state is None or not state.routable:
            await self._not_served(model, version, authorization, app, state)
        status, headers, body = await getattr(self._handle(app), method).remote(authorization, *args)
        if status != 200:
            raise _Answered(status, headers, body)
        return headers, body

    async def _not_served(self, model: str, version: str, authorization: str, app: str, state: App | None) -> None:
        """What the master answers over HTTP for a model Serve does not run:
        the caller without one of its keys hears what a wrong key hears."""
        hashes: list[str] = await self._master.key_hashes.remote(model)
        check_key(model, bearer_key_from(authorization), hashes, self._wrong_keys)
        if version and state is None:
            raise NotFound(f"model {model!r} has no version {version} being served; list them with "
                           f"GET /api/models/{model}/versions", input="version")
        status = state.status if state is not None else "NOT_STARTED"
        raise Unavailable(f"model {model!r} is starting ({status}); retry in a few seconds", input="model")

    def _handle(self, app: str) -> DeploymentHandle[Any]:
        if app not in self._handles:
            self._handles[app] = serve.get_deployment_handle(_INGRESS, app, _check_exists=False)
        return self._handles[app]


async def serve_forever(address: str, serve_api: ServeRestApi, max_message_bytes: int) -> None:
    """Listen on ``address`` (``host:port``) until cancelled. gRPC refuses a
    message over ``max_message_bytes`` (RESOURCE_EXHAUSTED) before parsing it."""
    service = InferenceService(serve_api)
    await service.refresh()
    server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
    ])
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(service, server)
    if server.add_insecure_port(address) == 0:
        raise RuntimeError(f"gRPC: cannot listen on {address}")
    await server.start()
    refresher = asyncio.create_task(service.refresh_forever())
    logger.info("KServe v2 gRPC inference service on %s", address)
    try:
        await server.wait_for_termination()
    finally:
        refresher.cancel()
        await server.stop(grace=5)
