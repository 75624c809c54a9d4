"""Clients for the manager's API: accounts and tokens, models, versions, keys,
profiles and the cluster. :class:`ManagerClient` and :class:`AsyncManagerClient`
share every operation; only sending differs.

>>> manager = ManagerClient("http://127.0.0.1:8080")
>>> manager.login("ada", "correct horse battery")   # an API token, now in use
>>> key = manager.register("mlp.pt", manifest)
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from os import PathLike
from pathlib import Path
from typing import IO, Any, Self

import httpx

from seedserve.client._base import DEFAULT_TIMEOUT, BaseClient, SyncClient, raise_for_error, transport_error

__all__ = ["ManagerClient", "AsyncManagerClient", "artifact_format"]

_FORMATS_BY_SUFFIX = {".pt2": "export", ".zip": "handler"}

#: Called with (bytes sent so far, total bytes) while an artifact uploads.
Progress = Callable[[int, int], None]


def artifact_format(path: Path) -> str:
    """The artifact format a file's suffix implies: ``.pt2`` export, ``.zip`` handler, else TorchScript."""
    return _FORMATS_BY_SUFFIX.get(path.suffix.lower(), "torchscript")


class _Reading:
    """A file that reports how much of it has been read (the upload's progress)."""

    def __init__(self, file: IO[bytes], total: int, progress: Progress) -> None:
        self._file, self._total, self._progress, self._sent = file, total, progress, 0

    def read(self, size: int = -1) -> bytes:
        chunk = self._file.read(size)
        self._sent += len(chunk)
        self._progress(self._sent, self._total)
        return chunk

    def __getattr__(self, name: str) -> Any:  # fileno, seek, tell: httpx sizes the part with them
        return getattr(self._file, name)


class _Operations(BaseClient):
    """Every operation of the manager's API, once. ``_call`` sends; in the
    async client it returns a coroutine, so each method there is awaited."""

    def _call(self, method: str, path: str, pick: Callable[[Any], Any] | None = None, **kwargs: Any) -> Any:
        raise NotImplementedError

    # accounts

    def signup(self, username: str, password: str, *, invite: str | None = None) -> Any:
        """Create an account; ``invite``: the code the admin gave you, where
        sign-up is by invitation. With the admin token: create it as the admin."""
        body = {"username": username, "password": password}
        if invite is not None:
            body["invite"] = invite
        return self._call("POST", "/api/users", json=body)

    def create_token(self, label: str = "api", *, username: str | None = None, password: str | None = None) -> Any:
        """A new API token (its ``token`` is shown only this once). Signed in,
        or with ``username`` and ``password``."""
        body: dict[str, Any] = {"label": label}
        if username is not None or password is not None:
            body |= {"username": username, "password": password}
        return self._call("POST", "/api/tokens", json=body)

    def tokens(self) -> Any:
        return self._call("GET", "/api/tokens", lambda b: b["tokens"])

    def revoke_token(self, token_id: str) -> Any:
        return self._call("DELETE", f"/api/tokens/{token_id}")

    def me(self) -> Any:
        return self._call("GET", "/api/me")

    # the admin's: invite codes and trusted accounts

    def create_invite(self, label: str = "invite", *, expires_in_s: int | None = None, single_use: bool = True) -> Any:
        """A new invite code (admin token; its ``code`` is shown only this once)."""
        return self._call("POST", "/api/invites",
                          json={"label": label, "expires_in_s": expires_in_s, "single_use": single_use})

    def invites(self) -> Any:
        """Every invite (admin token): ids, expiry, uses; never the codes."""
        return self._call("GET", "/api/invites", lambda b: b["invites"])

    def revoke_invite(self, invite_id: str) -> Any:
        return self._call("DELETE", f"/api/invites/{invite_id}")

    def set_trusted(self, username: str, trusted: bool = True) -> Any:
        """Whether ``username`` may register handler packages (admin token)."""
        return self._call("PUT", f"/api/users/{username}/trusted", json={"trusted": trusted})

    # models and versions

    def list_models(self) -> Any:
        return self._call("GET", "/api/models", lambda b: b["models"])

    def get_model(self, name: str) -> Any:
        """The model with its profile, predicted latency per worker type and recommendation."""
        return self._call("GET", f"/api/models/{name}")

    def versions(self, name: str) -> Any:
        """Every version of ``name``, oldest first."""
        return self._call("GET", f"/api/models/{name}/versions", lambda b: b["versions"])

    def get_version(self, name: str, version: int) -> Any:
        return self._call("GET", f"/api/models/{name}/versions/{version}")

    def pin(self, name: str, version: int | None) -> Any:
        """Serve ``version`` at the model's endpoint (a rollback), or the latest if None."""
        return self._call("PUT", f"/api/models/{name}/pin", json={"version": version})

    def delete_model(self, name: str) -> Any:
        return self._call("DELETE", f"/api/models/{name}")

    def register_model(self, artifact_path: str | PathLike[str], manifest: dict[str, Any], *,
                       format: str | None = None, progress: Progress | None = None) -> Any:
        """Register a model, or the next version of one you own; the whole
        answer (version, profile, predictions, and for a new model its key).
        ``progress(sent, total)`` is called as the artifact uploads."""
        return self._upload("/api/models", artifact_path, manifest, format, progress, None)

    def register(self, artifact_path: str | PathLike[str], manifest: dict[str, Any], *,
                 format: str | None = None, progress: Progress | None = None) -> Any:
        """Register a model, or the next version of one you own. Returns a new
        model's secret key (shown only this once); None for a new version,
        which the model's existing keys serve. The artifact: a ``torch.export``
        program (``.pt2``, from :func:`seedserve.client.export.save_program`),
        the format to use; a handler package (``.zip``, from
        :func:`seedserve.client.handler.package_handler`); or TorchScript
        (``.pt``), deprecated by torch and still served (the answer warns,
        and this raises a :class:`FutureWarning`). ``format``: ``export``,
        ``handler`` or ``torchscript``; by default from the file's suffix."""
        return self._upload("/api/models", artifact_path, manifest, format, progress, lambda b: b["key"])

    def profile(self, artifact_path: str | PathLike[str], manifest: dict[str, Any], *,
                format: str | None = None) -> Any:
        """Profile an artifact without registering it: FLOPs, predicted latency, recommendation."""
        return self._upload("/api/profile", artifact_path, manifest, format, None, None)

    # keys

    def keys(self, name: str) -> Any:
        return self._call("GET", f"/api/models/{name}/keys", lambda b: b["keys"])

    def create_key(self, name: str, label: str = "default") -> Any:
        """A new key for ``name``; its ``key`` is shown only this once."""
        return self._call("POST", f"/api/models/{name}/keys", json={"label": label})

    def rotate_key(self, name: str, key_id: str) -> Any:
        """A new secret under the key's label; the old key stops working."""
        return self._call("POST", f"/api/models/{name}/keys/{key_id}/rotate")

    def revoke_key(self, name: str, key_id: str) -> Any:
        return self._call("DELETE", f"/api/models/{name}/keys/{key_id}")

    # cluster

    def cluster(self) -> Any:
        """Nodes, worker types, and your models' status, replicas and live numbers."""
        return self._call("GET", "/api/cluster")

    def _upload(self, path: str, artifact_path: str | PathLike[str], manifest: dict[str, Any], format: str | None,
                progress: Progress | None, pick: Callable[[Any], Any] | None) -> Any:
        file_path = Path(artifact_path)
        file = file_path.open("rb")
        body: Any = file if progress is None else _Reading(file, file_path.stat().st_size, progress)
        files = {"artifact": (file_path.name, body, "application/octet-stream")}
        data = {"manifest": json.dumps(manifest), "format": format or artifact_format(file_path)}
        return self._call("POST", path, _warning(pick), files=files, data=data, _close=file)


def _warning(pick: Callable[[Any], Any] | None) -> Callable[[Any], Any]:
    """``pick``, after the answer's ``warnings`` (a deprecated artifact
    format) are raised as :class:`FutureWarning`, which Python shows users."""
    def picked(body: Any) -> Any:
        for text in body.get("warnings", []) if isinstance(body, dict) else []:
            warnings.warn(text, FutureWarning, stacklevel=4)
        return body if pick is None else pick(body)
    return picked


class ManagerClient(_Operations, SyncClient):
    """The manager's API over one ``httpx.Client``. ``token``: an API token
    (or the admin token); without one, :meth:`login` gets one."""

    def __init__(self, url: str, token: str | None = None, *, timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
                 transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(url, token)
        self._http = httpx.Client(timeout=timeout, transport=transport)

    def login(self, username: str, password: str, label: str = "sdk") -> str:
        """Sign in: create an API token, use it from now on, and return it."""
        token = str(self.create_token(label, username=username, password=password)["token"])
        self.use_token(token)
        return token

    def _call(self, method: str, path: str, pick: Callable[[Any], Any] | None = None, *,
              _close: IO[bytes] | None = None, **kwargs: Any) -> Any:
        url = self._url(path)
        try:
            response = self._http.request(method, url, headers=self._headers, **kwargs)
        except httpx.TransportError as exc:
            raise transport_error(url, exc) from exc
        finally:
            if _close is not None:
                _close.close()
        body = raise_for_error(response)
        return body if pick is None else pick(body)


class AsyncManagerClient(_Operations):
    """The asynchronous twin of :class:`ManagerClient`: the same methods, awaited."""

    def __init__(self, url: str, token: str | None = None, *, timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(url, token)
        self._http = httpx.AsyncClient(timeout=timeout, transport=transport)

    async def login(self, username: str, password: str, label: str = "sdk") -> str:
        token = str((await self.create_token(label, username=username, password=password))["token"])
        self.use_token(token)
        return token

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _call(self, method: str, path: str, pick: Callable[[Any], Any] | None = None, *,
                    _close: IO[bytes] | None = None, **kwargs: Any) -> Any:
        url = self._url(path)
        try:
            response = await self._http.request(method, url, headers=self._headers, **kwargs)
        except httpx.TransportError as exc:
            raise transport_error(url, exc) from exc
        finally:
            if _close is not None:
                _close.close()
        body = raise_for_error(response)
        return body if pick is None else pick(body)
