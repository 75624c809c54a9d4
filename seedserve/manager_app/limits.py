"""An ASGI middleware that refuses bodies over a limit while they stream in,
so an oversized upload is never read whole."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from seedserve.errors import InputTooLarge

__all__ = ["BodyLimit"]


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send, int(declared))
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._error(received)
            return message

        await self.app(scope, limited_receive, send)

    def _error(self, size: int) -> InputTooLarge:
        return InputTooLarge(
            f"the request body ({size:,} bytes) exceeds the limit of {self.max_bytes:,} bytes; "
            "send a smaller artifact or raise SEEDSERVE_MAX_ARTIFACT_BYTES",
            limit=self.max_bytes,
        )

    async def _refuse(self, send: Send, size: int) -> None:
        import json

        body = json.dumps(self._error(size).to_body()).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
