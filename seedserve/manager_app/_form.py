"""Reading an upload form whose text fields are checked as they arrive, so a
field sent ahead of the file (the SDK sends ``manifest`` and ``format`` first)
can refuse the request before the file part is read from the network."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.datastructures import FormData, Headers
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from seedserve.errors import InvalidInput

__all__ = ["Watch", "watched_form"]

#: Called with (name, value) of each text field once it is complete; raises to refuse.
Watch = Callable[[str, str], None]


class _WatchedParser(MultiPartParser):
    def __init__(self, headers: Headers, request: Request, watch: Watch, **limits: Any) -> None:
        super().__init__(headers, request.stream(), **limits)
        self._watch = watch

    def on_part_end(self) -> None:
        super().on_part_end()
        name, value = self.items[-1]
        if isinstance(value, str):
            # Raised from inside the parser's write(): the rest of the body is never read.
            self._watch(name, value)


@asynccontextmanager
async def watched_form(request: Request, watch: Watch, *, max_files: int, max_fields: int,
                       max_part_size: int) -> AsyncIterator[FormData]:
    """The request's form, like ``request.form(...)``, calling ``watch`` on each
    text field as soon as it is complete; its files are closed when the block ends."""
    limits = {"max_files": max_files, "max_fields": max_fields, "max_part_size": max_part_size}
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        async with request.form(**limits) as form:
            for name, value in form.multi_items():
                if isinstance(value, str):
                    watch(name, value)
            yield form
        return
    try:
        form = await _WatchedParser(request.headers, request, watch, **limits).parse()
    except MultiPartException as exc:
        raise InvalidInput(f"the upload is not a valid multipart form: {exc.message}", input="body") from None
    try:
        yield form
    finally:
        await form.close()
