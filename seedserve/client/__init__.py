"""The Python SDK: :class:`Client` for queries, :class:`ManagerClient` for the registry."""

from seedserve.client.client import AsyncClient, Client
from seedserve.client.handler import package_handler
from seedserve.client.manager import AsyncManagerClient, ManagerClient

__all__ = ["AsyncClient", "AsyncManagerClient", "Client", "ManagerClient", "package_handler"]
