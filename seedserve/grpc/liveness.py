"""Whether the gRPC inference service answers (for ``seedserve up`` and ``seedserve status``)."""

from __future__ import annotations

import grpc

from seedserve.grpc import grpc_predict_v2_pb2 as pb
from seedserve.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

__all__ = ["server_live"]


def server_live(target: str, timeout_s: float = 2.0) -> bool:
    """Whether ``ServerLive`` on ``target`` (``host:port``) answers live."""
    with grpc.insecure_channel(target) as channel:
        try:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            return bool(stub.ServerLive(pb.ServerLiveRequest(), timeout=timeout_s).live)
        except grpc.RpcError:
            return False
