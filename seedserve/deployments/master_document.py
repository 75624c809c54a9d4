"""The master's OpenAPI 3.1 document: the native query routes, the Open
Inference Protocol (v2) REST routes with the binary data extension, health,
metrics and the cluster view. The master serves it at ``GET /openapi.json``
and answers 405 with its ``Allow`` for a method it does not list.

A query's body depends on the model's declared inputs, so the document
describes it as an object of input name -> value; ``GET /v2/models/{name}``
gives a model's inputs, and the manager's model page shows its examples.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from seedserve import __version__, openapi_builder
from seedserve.codecs.registry import REGISTRY
from seedserve.codecs.v2_wire import DATATYPES, HEADER_LENGTH
from seedserve.names import MODEL_NAME_PATTERN
from seedserve.openapi_builder import Operation, content, ref

__all__ = ["allowed_methods", "master_document"]

OipDatatype = Literal[tuple(sorted({*DATATYPES, "BYTES"}))]  # type: ignore[valid-type]


class RequestTensor(BaseModel):
    name: str
    shape: list[int] = Field(description="Non-negative dimensions.")
    datatype: OipDatatype  # type: ignore[valid-type]
    parameters: dict[str, Any] | None = Field(
        default=None, description="binary_data_size: the tensor's bytes follow the JSON (binary extension).")
    data: Any = Field(default=None, description="The elements, flat or nested, row-major; BYTES as strings.")


class RequestedOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = Field(default=None, description="binary_data: answer this output as bytes.")


class InferenceRequest(BaseModel):
    id: str | None = None
    parameters: dict[str, Any] | None = Field(default=None, description="binary_data_output: every output as bytes.")
    inputs: list[RequestTensor]
    outputs: list[RequestedOutput] | None = None


class ResponseTensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    outputs: list[ResponseTensor]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class Live(BaseModel):
    live: bool


class Ready(BaseModel):
    ready: bool


class ModelReady(BaseModel):
    name: str
    ready: bool


class Health(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: Literal["ok", "degraded"]
    down: list[str] = Field(default_factory=list, description="The components that are down (503 when any is).")
    components: dict[str, Any]


class OipError(BaseModel):
    """The Open Inference Protocol's error body, with seedserve's fields beside it."""

    model_config = ConfigDict(extra="allow")

    error: str = Field(description="What was wrong and what to do (the protocol's error message).")
    code: str = Field(description="seedserve's stable code: invalid_input, unauthenticated, ...")
    input: str | None = Field(default=None, description="The input or field at fault, when there is one.")


class RepositoryIndexRequest(BaseModel):
    ready: bool = Field(default=False, description="Only the models that are ready.")


class RepositoryModel(BaseModel):
    name: str
    version: str
    state: Literal["READY", "UNAVAILABLE"]
    reason: str


class Duration(BaseModel):
    count: int
    ns: int


class BatchStatistics(BaseModel):
    batch_size: int
    compute_input: Duration
    compute_infer: Duration
    compute_output: Duration


class ModelStatistics(BaseModel):
    name: str
    version: str
    last_inference: int = Field(description="When the last successful query was answered (ms since the epoch).")
    inference_count: int = Field(description="Items inferred (a query of N rows counts N).")
    execution_count: int = Field(description="Model calls (a batch of queries is one).")
    inference_stats: dict[str, Duration]
    batch_stats: list[BatchStatistics]


class Statistics(BaseModel):
    model_stats: list[ModelStatistics]


class ClusterView(BaseModel):
    nodes: list[dict[str, Any]]
    models: dict[str, dict[str, Any]]
    applications: dict[str, str] = Field(description="Serve application -> its status.")


_SCHEMAS: list[type[BaseModel]] = [InferenceRequest, InferenceResponse, ModelMetadata, ServerMetadata, Live, Ready,
                                   ModelReady, Health, ClusterView, OipError, RepositoryIndexRequest, RepositoryModel,
                                   Statistics]
_INDEX = {"application/json": {"schema": {"type": "array", "items": ref(RepositoryModel)}}}

_QUERY = {
    "application/json": {"schema": {
        "type": "object",
        "description": "Input name -> value, by the input's kind: "
                       + "; ".join(f"{name}: {kind.doc}" for name, kind in REGISTRY.items())
                       + "; see the model's inputs.",
    }},
    "multipart/form-data": {"schema": {"type": "object", "description": "One part per input; files as files."}},
}
_ANSWER = {"application/json": {"schema": {"type": "object", "description": "Output name -> value (and top_k "
                                                                             "labels for a classifier)."}}}
_INFER_BODY = {
    "application/json": {"schema": ref(InferenceRequest)},
    "application/octet-stream": {"schema": {
        "type": "string", "format": "binary",
        "description": f"Binary data extension: the request JSON ({HEADER_LENGTH} bytes), then each "
                       "tensor's bytes in order."}},
}
_INFER_ANSWER = {
    "application/json": {"schema": ref(InferenceResponse)},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary",
                                            "description": "The response JSON, then the outputs asked for as bytes."}},
}
_KEY = ("Authorization", "Bearer <model key>: one of the model's keys.")
_QUERY_ERRORS = (400, 404, 408, 413, 415, 422, 429, 503, 504)
_RETRY = (429, 503)
_BINARY_HEADER = (f"{HEADER_LENGTH}?", "With the binary extension: the length of the JSON part.")


def _query_ops(path: str, summary: str) -> list[Operation]:
    return [Operation("post", path, summary, _ANSWER, body=_QUERY, errors=_QUERY_ERRORS, retry_after=_RETRY,
                      tags=("queries",), headers=(_KEY,))]


#: The operational endpoints: they name models and nodes, so they need the
#: admin token or the metrics token.
_OPERATOR_OPS = [
    Operation("get", "/metrics", "Per-model requests, errors, latency, batch sizes, replicas (Prometheus text)",
              {"text/plain": {"schema": {"type": "string"}}}, errors=(), tags=("cluster",)),
    Operation("get", "/cluster", "Nodes with their worker types, and each model's applications and replicas",
              ClusterView, errors=(), tags=("cluster",)),
    Operation("get", "/-/routes", "Route prefix -> application (Serve's routes table)",
              {"application/json": {"schema": {"type": "object", "additionalProperties": {"type": "string"}}}},
              errors=(), tags=("cluster",)),
]

OPERATIONS: list[Operation] = [
    *_query_ops("/models/{name}/predict", "Query the version the model serves"),
    *_query_ops("/models/{name}/versions/{version}/predict", "Query one registered version"),
    Operation("get", "/v2", "Server metadata (Open Inference Protocol)", ServerMetadata, errors=(), auth=False,
              tags=("open inference protocol",)),
    Operation("get", "/v2/health/live", "Liveness", Live, errors=(), auth=False, tags=("open inference protocol",)),
    Operation("get", "/v2/health/ready", "Readiness: the master has reconciled the registry", Ready, errors=(503,),
              auth=False, tags=("open inference protocol",)),
    *(op for prefix in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}") for op in (
        Operation("get", prefix, "Model metadata: inputs and outputs as tensors", ModelMetadata, errors=(404, 429, 503),
                  retry_after=(429, 503), tags=("open inference protocol",), headers=(_KEY,)),
        Operation("get", f"{prefix}/ready", "Model readiness", ModelReady, errors=(404, 429, 503),
                  retry_after=(429, 503),
                  tags=("open inference protocol",), headers=(_KEY,)),
        Operation("post", f"{prefix}/infer", "Inference (JSON, or the binary data extension)", _INFER_ANSWER,
                  body=_INFER_BODY, errors=_QUERY_ERRORS, retry_after=_RETRY, tags=("open inference protocol",),
                  headers=(_KEY, _BINARY_HEADER)),
        Operation("get", f"{prefix}/stats", "Inference statistics of the replica that answers (statistics extension)",
                  Statistics, errors=(404, 429, 503), retry_after=(429, 503), tags=("open inference protocol",),
                  headers=(_KEY,)),
    )),
    Operation("post", "/v2/repository/index",
              "The models the key may query (model repository extension); an anonymous caller gets []",
              _INDEX, body=RepositoryIndexRequest, body_required=False, errors=(400, 413, 429), retry_after=(429,),
              auth=False, tags=("open inference protocol",),
              headers=(("Authorization?", "Bearer <model key>, or the admin or metrics token (every model)."),)),
    Operation("get", "/healthz", "Readiness: master, database and reconciler health, 503 naming what is down "
              "(names no model)", Health, errors=(), auth=False, tags=("cluster",)),
    Operation("get", "/livez", "Liveness: 200 while the master answers", Live, errors=(), auth=False,
              tags=("cluster",)),
    *_OPERATOR_OPS,
    Operation("get", "/openapi.json", "This document", {"application/json": {"schema": {"type": "object"}}},
              errors=(), auth=False, tags=("cluster",)),
]

_PARAMS: dict[str, dict[str, Any]] = {
    "name": {"type": "string", "pattern": MODEL_NAME_PATTERN},
    "version": {"type": "integer", "minimum": 1},
}


@cache
def master_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the master's routes."""
    document = openapi_builder.build_document(
        info={
            "title": "seedserve master",
            "version": __version__,
            "description": "Query registered models: natively at /models/{name}/predict or with the Open Inference "
            "Protocol (v2). Queries and model metadata carry one of the model's keys as 'Authorization: Bearer <key>'; "
            "an unknown model and a wrong key get the same 401. /metrics, /cluster and /-/routes need the admin or "
            'the metrics token. Errors are {"error": {"code", "message", "input"}}, and on /v2 the protocol\'s '
            '{"error": "<message>", "code", "input"}; 429 and 503 come with Retry-After.',
        },
        operations=OPERATIONS,
        schemas=_SCHEMAS,
        params=_PARAMS,
        security={"model_key": {"type": "http", "scheme": "bearer", "description": "One of the model's keys."}},
    )
    document["components"]["securitySchemes"]["operator_token"] = {
        "type": "http", "scheme": "bearer", "description": "The admin token, or the metrics token "
                                                           "(SEEDSERVE_METRICS_TOKEN)."}
    for op in _OPERATOR_OPS:
        operation = document["paths"][op.path][op.method]
        operation["security"] = [{"operator_token": []}]
        operation["responses"]["401"]["description"] = "No token, or not the admin or the metrics token"
    # An unknown model and a wrong key get the same 401, so that an anonymous caller cannot tell which models exist.
    for item in document["paths"].values():
        for operation in item.values():
            if operation.get("security") is None and "401" in operation["responses"]:
                operation["responses"]["401"]["description"] = (
                    "Missing key, or no model of that name accepts this key (the same answer for both)")
    # /v2 answers errors in the Open Inference Protocol's shape.
    for path, item in document["paths"].items():
        if path == "/v2" or path.startswith("/v2/"):
            for operation in item.values():
                for response in operation["responses"].values():
                    if response.get("content") == content(openapi_builder.Error):
                        response["content"] = content(OipError)
    # Not ready is a readiness answer, not an error.
    document["paths"]["/v2/health/ready"]["get"]["responses"]["503"] = {
        "description": "Not ready yet", "content": {"application/json": {"schema": ref(Ready)}}}
    document["paths"]["/healthz"]["get"]["responses"]["503"] = {
        "description": "A component is down; 'down' names it", "content": {"application/json": {"schema": ref(Health)}}}
    return document


def allowed_methods(path: str) -> list[str] | None:
    """The methods the document gives ``path`` (no HEAD: the master answers
    only what it lists), or None for a path it does not describe."""
    methods = openapi_builder.allowed_methods(master_document(), path)
    return None if methods is None else [m for m in methods if m != "HEAD"]
