"""Baseline: a bare Starlette app with the models in process (run by uvicorn)."""

from __future__ import annotations

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

    async def predict(request: Request) -> JSONResponse:
        return JSONResponse(infer(model, await request.json()))

    return predict


app = Starlette(routes=[Route(w.path, _endpoint(name), methods=["POST"]) for name, w in WORKLOADS.items()])
