"""Baseline: a bare Starlette app with the models in process (run by uvicorn).
With BENCH_OPTIMIZED=1 it runs each model as seedserve's replicas do: TorchScript,
frozen and optimized for inference, so the table can separate what the graph
optimization gives from what the serving path gives. BENCH_MODEL and
BENCH_MANIFEST choose the models (see :func:`benchmarks._selection.select`)."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

import torch
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from benchmarks._selection import Served, infer, select, torchscript

torch.set_num_threads(1)


def _endpoint(served: Served) -> Callable[[Request], Awaitable[JSONResponse]]:
    model = served.make()
    if os.environ.get("BENCH_OPTIMIZED") == "1":
        model = torch.jit.optimize_for_inference(torch.jit.freeze(torchscript(served, model).eval()))

    async def predict(request: Request) -> JSONResponse:
        return JSONResponse(infer(model, served.manifest, await request.json()))

    return predict


app = Starlette(routes=[Route(s.path, _endpoint(s), methods=["POST"])
                        for s in select(os.environ.get("BENCH_MODEL", "builtin"), os.environ.get("BENCH_MANIFEST"))])
