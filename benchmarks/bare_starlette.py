"""Baseline: a bare Starlette app with the models in process (run by uvicorn).
With BENCH_OPTIMIZED=1 it runs each model as seedserve's replicas do: TorchScript,
frozen and optimized for inference, so the table can separate what the graph
optimization gives from what the serving path gives."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

import torch
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from benchmarks._model import INFER, MODELS, WORKLOADS

torch.set_num_threads(1)


def _endpoint(name: str) -> Callable[[Request], Awaitable[JSONResponse]]:
    model, infer = MODELS[name](), INFER[name]
    if os.environ.get("BENCH_OPTIMIZED") == "1":
        model = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.script(model.eval())))

    async def predict(request: Request) -> JSONResponse:
        return JSONResponse(infer(model, await request.json()))

    return predict


app = Starlette(routes=[Route(w.path, _endpoint(name), methods=["POST"]) for name, w in WORKLOADS.items()])
