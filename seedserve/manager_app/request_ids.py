"""Every manager answer carries ``X-Request-Id`` (the caller's, if sane, else
a new one), and every line logged while serving it names it."""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from seedserve.logs import REQUEST_ID_HEADER, bind_request, request_id_from

__all__ = ["RequestIds"]


def _model_of(path: str) -> str | None:
    """The model an API path is about (``/api/models/{name}...``), if any."""
    parts = path.strip("/").split("/")
    return parts[2] if parts[:2] == ["api", "models"] and len(parts) > 2 else None


class RequestIds:
    """ASGI middleware: binds the request's id (and model) for its log lines
    and puts the id on the answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(Headers(scope=scope).get(REQUEST_ID_HEADER))
        bind_request(request_id, _model_of(scope["path"]))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        await self.app(scope, receive, send_with_id)
