"""The Python SDK: :class:`Client` for queries, :class:`ManagerClient` for the registry.

Importing it needs httpx, numpy, Pillow and pydantic only, never torch or
Ray, so an application that only queries installs just those
(``pip install seedserve``). :func:`~seedserve.client.handler.package_handler`,
which needs torch, is imported from :mod:`seedserve.client.handler`.
"""

from typing import Any

from seedserve.client._base import Retries
from seedserve.client.client import AsyncClient, Client
from seedserve.client.manager import AsyncManagerClient, ManagerClient

__all__ = ["AsyncClient", "AsyncManagerClient", "Client", "ManagerClient", "Retries"]

_MOVED = {"package_handler": "seedserve.client.handler"}


def __getattr__(name: str) -> Any:
    # An ImportError, not an AttributeError: `from seedserve.client import
    # package_handler` then shows this message instead of "cannot import name".
    if name in _MOVED:
        raise ImportError(
            f"{name} moved to {_MOVED[name]} (it needs torch, which the client does not); "
            f"use `from {_MOVED[name]} import {name}`",
            name=name,
        )
    raise AttributeError(f"module 'seedserve.client' has no attribute {name!r}")
