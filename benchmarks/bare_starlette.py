"""Baseline: a bare Starlette app with the model in process (run by uvicorn)."""

from __future__ import annotations

import torch
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from benchmarks._model import infer, make_mlp

torch.set_num_threads(1)
_MODEL = make_mlp()


async def predict(request: Request) -> JSONResponse:
    return JSONResponse(infer(_MODEL, await request.json()))


app = Starlette(routes=[Route("/models/bench-mlp/predict", predict, methods=["POST"])])
