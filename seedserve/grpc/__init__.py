"""The KServe v2 gRPC inference service (``inference.GRPCInferenceService``).

It runs beside Ray Serve, in its own process started by ``seedserve up``:
each RPC is turned into the Open Inference Protocol request the model's
replica already serves (``ModelServer.infer_v2``, ``metadata_v2``,
``ready_v2``) and sent there through a Serve handle, one Ray hop, so keys,
limits, decoding, batching and errors are the ones of ``/v2``. Its modules
import the generated stubs; this package's own import does not.

The stubs live in a private descriptor pool: the message names are the
protocol's (``inference.ModelInferRequest``...), the same as tritonclient's
own stubs, and two files defining one name cannot share protobuf's default
pool, so a process may import both.

grpc_predict_v2.proto says how the stubs and their ``.pyi`` type stubs
(mypy-protobuf's) are generated.
"""

__all__: list[str] = []
