"""Peer: the same models on PyTriton (NVIDIA's Python front end to Triton
Inference Server), one instance each, Triton's dynamic batcher on (max
batch 16, Triton's default queue delay of 0) wherever the model batches.

Runs in PyTriton's own venv (see benchmarks._pytriton_env), with this
checkout on PYTHONPATH; it imports torch, numpy, Pillow and
benchmarks._selection, nothing of seedserve.

Triton speaks KServe v2 only (POST /v2/models/{name}/infer), so the
native bodies cannot be sent to it: a tensor comes as a v2 tensor (JSON
``data``, or raw bytes with the binary extension), an image as one BYTES
element, the PNG's base64 text in v2 JSON (decoded here, as every other
server does) or the raw PNG with the binary extension.
"""

from __future__ import annotations

import argparse
import base64
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from benchmarks._selection import Served, arguments, decode_image, select, triton_batches

torch.set_num_threads(1)
_MAGIC = (b"\x89PNG", b"\xff\xd8\xff")  # a raw PNG or JPEG; base64 text never starts with these bytes


def _image(item: bytes, spec: dict[str, Any]) -> np.ndarray:
    return decode_image(item if item.startswith(_MAGIC) else base64.b64decode(item), spec)


def _call(model: Any, served: Served, inputs: dict[str, np.ndarray], batch: bool) -> dict[str, np.ndarray]:
    tensors = []
    for spec in served.manifest["inputs"]:
        value = inputs[spec["name"]]
        if spec.get("kind", "tensor") == "image":
            items = value[:, 0] if batch else value
            value = np.stack([_image(bytes(item), spec) for item in items])
        tensors.append(torch.from_numpy(np.ascontiguousarray(value)))
    with torch.inference_mode():
        result = model(*tensors)
    results = result if isinstance(result, (tuple, list)) else (result,)
    return {spec["name"]: r.numpy() for spec, r in zip(served.manifest["outputs"], results, strict=False)}


def _bind(triton: Any, served: Served) -> None:
    from pytriton.decorators import batch as batched
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor

    model, batch = served.make(), triton_batches(served)
    with torch.inference_mode():
        sample = model(*arguments(served.manifest, json.loads(served.body)))
    samples = sample if isinstance(sample, (tuple, list)) else (sample,)
    inputs = [Tensor(name=s["name"], dtype=bytes, shape=(1,)) if s.get("kind", "tensor") == "image"
              else Tensor(name=s["name"], dtype=np.dtype(s.get("dtype", "float32")),
                          shape=tuple(s["shape"][1:] if batch else s["shape"]))
              for s in served.manifest["inputs"]]
    outputs = [Tensor(name=s["name"], dtype=r.numpy().dtype, shape=tuple(r.shape[1:] if batch else r.shape))
               for s, r in zip(served.manifest["outputs"], samples, strict=False)]
    infer: Callable[..., Any]
    if batch:
        infer = batched(lambda **arrays: _call(model, served, arrays, True))
        config = ModelConfig(max_batch_size=16, batcher=DynamicBatcher())
    else:
        def infer(requests: list[Any]) -> list[dict[str, np.ndarray]]:
            return [_call(model, served, dict(request.items()), False) for request in requests]
        config = ModelConfig(batching=False)
    triton.bind(model_name=served.manifest["name"], infer_func=infer, inputs=inputs, outputs=outputs,
                config=config, strict=False)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--model", default="builtin", help="see benchmarks._selection.select")
    parser.add_argument("--manifest")
    args = parser.parse_args()
    from pytriton.triton import Triton, TritonConfig

    config = TritonConfig(http_address="127.0.0.1", http_port=args.port, grpc_address="127.0.0.1",
                          grpc_port=args.grpc_port, metrics_port=args.metrics_port, allow_gpu_metrics=False)
    with Triton(config=config) as triton:
        for served in select(args.model, args.manifest):
            _bind(triton, served)
        print("READY", flush=True)
        triton.serve()


if __name__ == "__main__":
    main()
