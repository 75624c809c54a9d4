"""seedserve's own log lines: where they go, their format, and the request
they belong to.

Every seedserve process (``seedserve up``, the manager, the master and its
reconciler, each model replica) calls :func:`configure` once with its
:class:`~seedserve.settings.Settings`: the ``seedserve`` logger then writes
to stderr (in Ray's processes, their file in Ray's log directory) and
appends to ``SEEDSERVE_LOG_FILE``, the one file ``seedserve up`` names, as
``text`` or ``json`` lines (``SEEDSERVE_LOG_FORMAT``) from
``SEEDSERVE_LOG_LEVEL`` up. Nothing is configured on import, and the
root logger (Ray's, uvicorn's) is left alone.

A query's request id, model and version are bound with :func:`bind_request`
for the rest of its task (a context variable), and every line logged meanwhile
names them. :func:`request_id_from` keeps a sane id the client sent
(``X-Request-Id``, or gRPC metadata ``x-request-id``) and makes one otherwise.

In Serve's applications (the master, the model replicas) Serve itself puts
the request's ``X-Request-Id`` on the answer (making one when none came);
seedserve's HAProxy config drops an id that is not sane before Serve sees it
(:func:`seedserve.cluster.haproxy.with_sane_request_ids`), so the id answered
is the one logged. The manager sets the header itself
(:class:`seedserve.manager_app.request_ids.RequestIds`).
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
import uuid
import weakref
from logging.handlers import WatchedFileHandler
from pathlib import Path
from typing import Literal

from pythonjsonlogger.json import JsonFormatter

__all__ = [
    "REQUEST_ID_HEADER",
    "LogFormat",
    "LogLevel",
    "AccessLog",
    "RequestContext",
    "SANE_REQUEST_ID",
    "bind_request",
    "configure",
    "current_request",
    "log_access",
    "log_error",
    "request_id_from",
]

#: The header that carries a request id, in both directions.
REQUEST_ID_HEADER = "X-Request-Id"

LogFormat = Literal["text", "json"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]

#: What a client may choose as its request id: printable, no spaces or quotes
#: (it is written into log lines and headers), at most 128 characters. Also
#: the rule of seedserve's HAProxy config (seedserve.cluster.haproxy).
SANE_REQUEST_ID = r"^[A-Za-z0-9][A-Za-z0-9._:/@+=-]{0,127}$"
_SANE_ID = re.compile(SANE_REQUEST_ID)

#: The fields a line carries for the request it belongs to.
_REQUEST_FIELDS = ("request_id", "model", "version")


class RequestContext:
    """The request a task is serving: its id, and the model and version it queries (if any)."""

    __slots__ = _REQUEST_FIELDS

    def __init__(self, request_id: str, model: str | None = None, version: int | None = None) -> None:
        self.request_id = request_id
        self.model = model
        self.version = version


_current: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar("seedserve_request", default=None)


def request_id_from(sent: str | None) -> str:
    """The id of a request: the one the client sent when it is sane (see
    :data:`_SANE_ID`), else a new random one."""
    if sent is not None and _SANE_ID.match(sent):
        return sent
    return str(uuid.uuid4())  # as Serve makes them


def bind_request(request_id: str, model: str | None = None, version: int | None = None) -> RequestContext:
    """Name ``request_id`` (and the model and version) in every line the current
    task logs from now on; tasks it starts inherit it."""
    context = RequestContext(request_id, model, version)
    _current.set(context)
    return context


def current_request() -> RequestContext | None:
    """The request bound in the current task, if any."""
    return _current.get()


class _RequestFilter(logging.Filter):
    """Copies the bound request's fields onto each record (``None`` when there is none)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _current.get()
        for name in _REQUEST_FIELDS:
            if getattr(record, name, None) is None:
                setattr(record, name, getattr(context, name, None) if context is not None else None)
        return True


class _TextFormatter(logging.Formatter):
    """``time LEVEL process logger: message [request_id=... model=... version=...]``."""

    def __init__(self, process: str) -> None:
        super().__init__("%(asctime)s %(levelname)s " + process + " %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = [f"{name}={getattr(record, name)}" for name in _REQUEST_FIELDS
                  if getattr(record, name, None) is not None]
        return f"{line} [{' '.join(fields)}]" if fields else line


def _formatter(log_format: LogFormat, process: str) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(model)s %(version)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            static_fields={"process": process},
        )
    return _TextFormatter(process)


#: The handlers :func:`configure` added, which a later call replaces.
_CONFIGURED: weakref.WeakSet[logging.Handler] = weakref.WeakSet()


def configure(log_format: LogFormat, level: LogLevel, log_file: Path | None, process: str) -> None:
    """Send the ``seedserve`` logger's lines to stderr and ``log_file`` (appended
    to; several processes share it), formatted as ``log_format``, from
    ``level`` up. ``process`` names this process in each line (``manager``,
    ``master``, ``model``...). Calling it again replaces what it set."""
    logger = logging.getLogger("seedserve")
    for handler in [h for h in logger.handlers if h in _CONFIGURED]:
        logger.removeHandler(handler)
        handler.close()
    # The process's own stderr: in a Ray worker that is its file in Ray's log
    # directory (worker-*.err), which `ray logs` and Ray's dashboard show.
    # Not sys.stderr: Serve's throughput-optimized replicas replace it with a
    # logger that buffers a thousand records before it writes any.
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.__stderr__ or sys.stderr)]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        # Watched: a rotated file (logrotate) is reopened, not written on after its rename.
        handlers.append(WatchedFileHandler(log_file, encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(_formatter(log_format, process))
        handler.addFilter(_RequestFilter())
        _CONFIGURED.add(handler)
        logger.addHandler(handler)
    logger.setLevel(level)
    # Ray's workers give the root logger handlers of their own; seedserve's lines go out once, here.
    logger.propagate = False


class AccessLog:
    """Which answers get an access line: none (``False``), every one (``True``),
    or one in ``every`` (``"sampled"``, counting from the first)."""

    def __init__(self, mode: bool | str, every: int = 100) -> None:
        self._every = 0 if mode is False else 1 if mode is True else every
        self._seen = 0

    def wants(self) -> bool:
        if not self._every:
            return False
        self._seen += 1
        return (self._seen - 1) % self._every == 0


_access = logging.getLogger("seedserve.access")
_errors = logging.getLogger("seedserve.errors")


def log_access(protocol: str, status: int, seconds: float) -> None:
    """An access line for the bound request: protocol (``http``, ``v2``...), status, seconds."""
    _access.info("%s %d %.6f s", protocol, status, seconds)


def log_error(status: int, code: str, message: str, input: str | None = None) -> None:
    """The line of an error answer, for the bound request (its id, model and
    version are on the line): the client's errors at INFO, the server's at ERROR."""
    where = f" (input {input!r})" if input else ""
    _errors.log(logging.ERROR if status >= 500 else logging.INFO, "answered %d %s%s: %s", status, code, where, message)
