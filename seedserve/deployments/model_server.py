"""The per-model server: one Serve application per registered model.

Its ingress replica does everything a query needs (key check, decode, infer,
encode) so that HAProxy's request reaches the model in a single hop.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from ray import serve
from ray.serve import Application
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from seedserve.codecs import Manifest, decode_inputs
from seedserve.codecs.outputs import encode_outputs
from seedserve.deployments._query import (
    KeyCache,
    bearer_key,
    bearer_key_from,
    error_response,
    read_body,
    relative_path,
)
from seedserve.deployments._oip import encode_infer_response, oip_tensor_metadata, parse_infer_request
from seedserve.deployments._transport import parse_payload
from seedserve.errors import InputTooLarge, NotFound, SeedserveError, http_status
from seedserve.registry import ModelStore, connect
from seedserve.codecs import sample_inputs
from seedserve.runtime import load_model, run_model

__all__ = ["ModelServer", "build"]

logger = logging.getLogger("seedserve.model_server")


@serve.deployment(max_ongoing_requests=32, health_check_period_s=5)
class ModelServer:
    """Serves one model version: ``POST <prefix>/predict``."""

    async def __init__(self, name: str, mongo_uri: str, database: str, key_refresh_s: float = 2.0) -> None:
        self._name = name
        store = ModelStore(connect(mongo_uri)[database])
        doc = await store.get(name)
        self._manifest = Manifest.model_validate(doc["manifest"])
        self._version = doc["version"]
        artifact = await store.read_artifact(doc["artifact"]["file_id"])
        self._model = load_model(artifact, doc["artifact"]["format"])
        # Warm-up: the first call of a TorchScript module compiles and is slow;
        # pay it here, before this replica takes traffic.
        run_model(self._model, self._manifest, sample_inputs(self._manifest))
        self._keys = KeyCache(
            [key["sha256"] for key in doc["keys"]], lambda: store.key_hashes(name), key_refresh_s
        )
        self._refresh = asyncio.get_running_loop().create_task(self._keys.refresh_forever())
        logger.info("model %s version %s ready", name, self._version)

    async def __call__(self, request: Request) -> Response:
        try:
            if relative_path(request).rstrip("/") == "/predict" and request.method == "POST":
                return await self._predict(request)
            raise NotFound(f"no route {request.method} {request.url.path}; use POST /models/{self._name}/predict")
        except SeedserveError as exc:
            return error_response(exc)

    async def _predict(self, request: Request) -> Response:
        self._keys.check(bearer_key(request))
        body = await read_body(request, self._manifest.max_body_bytes)
        arrays = decode_inputs(self._manifest, await parse_payload(request.headers, body, self._manifest))
        outputs = run_model(self._model, self._manifest, arrays)
        return JSONResponse(encode_outputs(self._manifest, outputs))

    async def infer_v2(self, authorization: str, header_length: str | None, body: bytes) -> tuple[int, dict[str, str], bytes]:
        """An Open Inference Protocol request forwarded by the master: status, headers, body."""
        try:
            self._keys.check(bearer_key_from(authorization))
            if len(body) > self._manifest.max_body_bytes:
                raise InputTooLarge(
                    f"the body ({len(body):,} bytes) exceeds the limit of {self._manifest.max_body_bytes:,} bytes",
                    limit=self._manifest.max_body_bytes,
                )
            payload, request = parse_infer_request(header_length, body, self._manifest)
            outputs = run_model(self._model, self._manifest, decode_inputs(self._manifest, payload))
            response_body, headers = encode_infer_response(self._name, self._version, outputs, request)
            return 200, headers, response_body
        except SeedserveError as exc:
            return http_status(exc), {"content-type": "application/json"}, json.dumps(exc.to_body()).encode()

    def metadata_v2(self) -> dict[str, Any]:
        """Model metadata in the Open Inference Protocol's form."""
        return {
            "name": self._name,
            "versions": [str(self._version)],
            "platform": "pytorch_torchscript",
            "inputs": [oip_tensor_metadata(spec) for spec in self._manifest.inputs],
            "outputs": [{"name": o.name, "datatype": "FP32", "shape": [-1]} for o in self._manifest.outputs],
        }

    def check_health(self) -> None:
        if self._refresh.done() and self._refresh.exception() is not None:
            raise RuntimeError("the key refresh task died") from self._refresh.exception()


def build(args: dict[str, Any]) -> Application:
    """Application builder for ``import_path: seedserve.deployments.model_server:build``."""
    return ModelServer.bind(
        args["name"], args["mongo_uri"], args["database"], float(args.get("key_refresh_s", 2.0))
    )
