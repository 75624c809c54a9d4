"""Request bodies to payloads (input name -> wire value), by content type.

JSON: the object itself. ``multipart/form-data``: one part per input, named
after it; file parts arrive as bytes (no base64), text parts as strings for
inputs of a ``text`` wire form (``Kind.wire``) and as JSON for the others.
Repeated file or text parts of one name are a batch.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from seedserve.codecs import Manifest
from seedserve.codecs.registry import kinds_of
from seedserve.deployments._query import load_json, parse_json
from seedserve.errors import InvalidInput, UnsupportedMediaType

__all__ = ["parse_payload"]


async def parse_payload(headers: Headers, body: bytes, manifest: Manifest) -> Any:
    """The payload of a query body already read within its limit."""
    content_type = headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if content_type in ("application/json", ""):
        return parse_json(body)
    if content_type == "multipart/form-data":
        return await _multipart(headers, body, manifest)
    raise UnsupportedMediaType(
        f"content type {content_type!r} is not accepted; send application/json or multipart/form-data"
    )


async def _multipart(headers: Headers, body: bytes, manifest: Manifest) -> dict[str, Any]:
    async def stream() -> AsyncGenerator[bytes, None]:
        yield body

    # Repeated parts form batches: allow as many parts as the declared batch limits.
    max_parts = sum(getattr(spec, "max_batch", 1) for spec in manifest.inputs)
    parser = MultiPartParser(headers, stream(), max_files=max_parts, max_fields=max_parts, max_part_size=len(body) + 1)
    # The body is already in memory and within its limit: keep file parts in
    # memory too (Starlette spools parts over 1 MB to disk, which cost more
    # than base64 JSON for a 1 MB image).
    parser.spool_max_size = len(body) + 1
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise InvalidInput(f"the multipart body is malformed: {exc.message}") from exc
    kinds = kinds_of(manifest.inputs)
    payload: dict[str, Any] = {}
    batched: set[str] = set()
    for name, part in form.multi_items():
        raw = name in kinds and kinds[name].wire == "text"
        if isinstance(part, UploadFile):
            value: Any = await part.read()
        elif raw:
            value = part
        else:
            value = load_json(part, f"input {name!r}: the form field", input=name)
        if name not in payload:
            payload[name] = value
        elif isinstance(part, UploadFile) or raw:
            # Repeated file parts, or text parts, of one name are a batch.
            if not isinstance(payload[name], list) or name not in batched:
                payload[name] = [payload[name]]
                batched.add(name)
            payload[name].append(value)
        else:
            raise InvalidInput(f"input {name!r} is sent twice", input=name)
    await form.close()
    return payload
