"""Clients for the manager's API: accounts and tokens, models, versions, keys,
profiles and the cluster. :class:`ManagerClient` and :class:`AsyncManagerClient`
share every operation (:class:`_Requests` builds each request and reads its
answer); only sending differs. Answers are the models of :mod:`seedserve.api`,
the ones the manager answers with.

>>> manager = ManagerClient("http://127.0.0.1:8080")
>>> manager.login("ada", "correct horse battery")   # an API token, now in use
>>> key = manager.register("mlp.pt", manifest)
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import IO, Any, Generic, Self, TypeVar

import httpx
from pydantic import BaseModel

from seedserve import api
from seedserve.client._base import DEFAULT_TIMEOUT, BaseClient, SyncClient, raise_for_error, transport_error

__all__ = ["ManagerClient", "AsyncManagerClient", "artifact_format"]

_FORMATS_BY_SUFFIX = {".pt2": "export", ".zip": "handler"}

#: Called with (bytes sent so far, total bytes) while an artifact uploads.
Progress = Callable[[int, int], None]

Answer = TypeVar("Answer")
Listing = TypeVar("Listing", bound=BaseModel)
Item = TypeVar("Item")


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


@dataclass(frozen=True)
class _Upload:
    """An artifact and its manifest, sent as the registration form."""

    artifact: Path
    manifest: dict[str, Any]
    format: str | None
    progress: Progress | None


@dataclass(frozen=True)
class _Call(Generic[Answer]):
    """One request of the manager's API and how to read its answer."""

    method: str
    path: str
    read: Callable[[Any], Answer]
    json: dict[str, Any] | None = None
    upload: _Upload | None = None

    @contextmanager
    def arguments(self) -> Iterator[dict[str, Any]]:
        """httpx's arguments for the body; an upload's file is open while the block runs."""
        if self.upload is None:
            yield {} if self.json is None else {"json": self.json}
            return
        up = self.upload
        with up.artifact.open("rb") as file:
            body: Any = file if up.progress is None else _Reading(file, up.artifact.stat().st_size, up.progress)
            yield {"files": {"artifact": (up.artifact.name, body, "application/octet-stream")},
                   "data": {"manifest": json.dumps(up.manifest), "format": up.format or artifact_format(up.artifact)}}

    def answer(self, response: httpx.Response) -> Answer:
        """The answer read as this call's model, or the named seedserve error."""
        return self.read(raise_for_error(response))


def _listed(model: type[Listing], items: Callable[[Listing], list[Item]]) -> Callable[[Any], list[Item]]:
    """Read the answer as the listing ``model`` and return its ``items``."""
    return lambda body: items(model.model_validate(body))


def _registered(body: Any) -> api.Registered:
    """The registration's answer; its ``warnings`` (a deprecated artifact
    format) are raised as :class:`FutureWarning`, which Python shows users."""
    answer = api.Registered.model_validate(body)
    for text in answer.warnings:
        warnings.warn(text, FutureWarning, stacklevel=_caller_level())
    return answer


def _caller_level() -> int:
    """The ``stacklevel`` that names the first frame outside this module, for
    the function that calls this: the user's call, however deep the client's
    own calls go (``register`` calls ``register_model``)."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and frame.f_code.co_filename == __file__:
        frame, level = frame.f_back, level + 1
    return level


class _Requests:
    """Every operation of the manager's API, once: the request and the model of its answer."""

    # accounts

    @staticmethod
    def signup(username: str, password: str, invite: str | None) -> _Call[api.User]:
        body = {"username": username, "password": password}
        if invite is not None:
            body["invite"] = invite
        return _Call("POST", "/api/users", api.User.model_validate, json=body)

    @staticmethod
    def create_token(label: str, username: str | None, password: str | None) -> _Call[api.TokenCreated]:
        body: dict[str, Any] = {"label": label}
        if username is not None or password is not None:
            body |= {"username": username, "password": password}
        return _Call("POST", "/api/tokens", api.TokenCreated.model_validate, json=body)

    @staticmethod
    def tokens() -> _Call[list[api.Token]]:
        return _Call("GET", "/api/tokens", _listed(api.TokenList, lambda listing: listing.tokens))

    @staticmethod
    def revoke_token(token_id: str) -> _Call[api.Revoked]:
        return _Call("DELETE", f"/api/tokens/{token_id}", api.Revoked.model_validate)

    @staticmethod
    def me() -> _Call[api.Me]:
        return _Call("GET", "/api/me", api.Me.model_validate)

    # the admin's

    @staticmethod
    def create_invite(label: str, expires_in_s: int | None, single_use: bool) -> _Call[api.InviteCreated]:
        return _Call("POST", "/api/invites", api.InviteCreated.model_validate,
                     json={"label": label, "expires_in_s": expires_in_s, "single_use": single_use})

    @staticmethod
    def invites() -> _Call[list[api.Invite]]:
        return _Call("GET", "/api/invites", _listed(api.InviteList, lambda listing: listing.invites))

    @staticmethod
    def revoke_invite(invite_id: str) -> _Call[api.Revoked]:
        return _Call("DELETE", f"/api/invites/{invite_id}", api.Revoked.model_validate)

    @staticmethod
    def set_trusted(username: str, trusted: bool) -> _Call[api.Trust]:
        return _Call("PUT", f"/api/users/{username}/trusted", api.Trust.model_validate, json={"trusted": trusted})

    # models and versions

    @staticmethod
    def list_models() -> _Call[list[api.Model]]:
        return _Call("GET", "/api/models", _listed(api.ModelList, lambda listing: listing.models))

    @staticmethod
    def get_model(name: str) -> _Call[api.ModelDetail]:
        return _Call("GET", f"/api/models/{name}", api.ModelDetail.model_validate)

    @staticmethod
    def versions(name: str) -> _Call[list[api.Version]]:
        return _Call("GET", f"/api/models/{name}/versions", _listed(api.VersionList, lambda listing: listing.versions))

    @staticmethod
    def get_version(name: str, version: int) -> _Call[api.Version]:
        return _Call("GET", f"/api/models/{name}/versions/{version}", api.Version.model_validate)

    @staticmethod
    def pin(name: str, version: int | None) -> _Call[api.Pinned]:
        return _Call("PUT", f"/api/models/{name}/pin", api.Pinned.model_validate, json={"version": version})

    @staticmethod
    def delete_model(name: str) -> _Call[api.Deleted]:
        return _Call("DELETE", f"/api/models/{name}", api.Deleted.model_validate)

    @staticmethod
    def register_model(upload: _Upload) -> _Call[api.Registered]:
        return _Call("POST", "/api/models", _registered, upload=upload)

    @staticmethod
    def profile(upload: _Upload) -> _Call[api.Profiled]:
        return _Call("POST", "/api/profile", api.Profiled.model_validate, upload=upload)

    # keys

    @staticmethod
    def keys(name: str) -> _Call[list[api.Key]]:
        return _Call("GET", f"/api/models/{name}/keys", _listed(api.KeyList, lambda listing: listing.keys))

    @staticmethod
    def create_key(name: str, label: str) -> _Call[api.KeyCreated]:
        return _Call("POST", f"/api/models/{name}/keys", api.KeyCreated.model_validate, json={"label": label})

    @staticmethod
    def rotate_key(name: str, key_id: str) -> _Call[api.KeyCreated]:
        return _Call("POST", f"/api/models/{name}/keys/{key_id}/rotate", api.KeyCreated.model_validate)

    @staticmethod
    def revoke_key(name: str, key_id: str) -> _Call[api.Revoked]:
        return _Call("DELETE", f"/api/models/{name}/keys/{key_id}", api.Revoked.model_validate)

    # cluster

    @staticmethod
    def cluster() -> _Call[api.Cluster]:
        return _Call("GET", "/api/cluster", api.Cluster.model_validate)


_requests = _Requests()


class ManagerClient(SyncClient):
    """The manager's API over one ``httpx.Client``. ``token``: an API token
    (or the admin token); without one, :meth:`login` gets one."""

    def __init__(self, url: str, token: str | None = None, *, timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
                 http_transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(url, token)
        self._http = httpx.Client(timeout=timeout, transport=http_transport)

    def login(self, username: str, password: str, label: str = "sdk") -> str:
        """Sign in: create an API token, use it from now on, and return it."""
        token = self.create_token(label, username=username, password=password).token
        self.use_token(token)
        return token

    # accounts

    def signup(self, username: str, password: str, *, invite: str | None = None) -> api.User:
        """Create an account; ``invite``: the code the admin gave you, where
        sign-up is by invitation. With the admin token: create it as the admin."""
        return self._send(_requests.signup(username, password, invite))

    def create_token(self, label: str = "api", *, username: str | None = None,
                     password: str | None = None) -> api.TokenCreated:
        """A new API token (its ``token`` is shown only this once). Signed in,
        or with ``username`` and ``password``."""
        return self._send(_requests.create_token(label, username, password))

    def tokens(self) -> list[api.Token]:
        return self._send(_requests.tokens())

    def revoke_token(self, token_id: str) -> api.Revoked:
        return self._send(_requests.revoke_token(token_id))

    def me(self) -> api.Me:
        return self._send(_requests.me())

    # the admin's: invite codes and trusted accounts

    def create_invite(self, label: str = "invite", *, expires_in_s: int | None = None,
                      single_use: bool = True) -> api.InviteCreated:
        """A new invite code (admin token; its ``code`` is shown only this once)."""
        return self._send(_requests.create_invite(label, expires_in_s, single_use))

    def invites(self) -> list[api.Invite]:
        """Every invite (admin token): ids, expiry, uses; never the codes."""
        return self._send(_requests.invites())

    def revoke_invite(self, invite_id: str) -> api.Revoked:
        return self._send(_requests.revoke_invite(invite_id))

    def set_trusted(self, username: str, trusted: bool = True) -> api.Trust:
        """Whether ``username`` may register handler packages (admin token)."""
        return self._send(_requests.set_trusted(username, trusted))

    # models and versions

    def list_models(self) -> list[api.Model]:
        return self._send(_requests.list_models())

    def get_model(self, name: str) -> api.ModelDetail:
        """The model with its profile, predicted latency per worker type and recommendation."""
        return self._send(_requests.get_model(name))

    def versions(self, name: str) -> list[api.Version]:
        """Every version of ``name``, oldest first."""
        return self._send(_requests.versions(name))

    def get_version(self, name: str, version: int) -> api.Version:
        return self._send(_requests.get_version(name, version))

    def pin(self, name: str, version: int | None) -> api.Pinned:
        """Serve ``version`` at the model's endpoint (a rollback), or the latest if None."""
        return self._send(_requests.pin(name, version))

    def delete_model(self, name: str) -> api.Deleted:
        return self._send(_requests.delete_model(name))

    def register_model(self, artifact_path: str | PathLike[str], manifest: dict[str, Any], *,
                       format: str | None = None, progress: Progress | None = None) -> api.Registered:
        """Register a model, or the next version of one you own; the whole
        answer (version, profile, predictions, and for a new model its key).
        ``progress(sent, total)`` is called as the artifact uploads."""
        return self._send(_requests.register_model(_Upload(Path(artifact_path), manifest, format, progress)))

    def register(self, artifact_path: str | PathLike[str], manifest: dict[str, Any], *,
                 format: str | None = None, progress: Progress | None = None) -> str | None:
        """Register a model, or the next version of one you own. Returns a new
        model's secret key (shown only this once); None for a new version,
        which the model's existing keys serve. The artifact: a ``torch.export``
        program (``.pt2``, from :func:`seedserve.client.export.save_program`),
        the format to use; a handler package (``.zip``, from
        :func:`seedserve.client.handler.package_handler`); or TorchScript
        (``.pt``), deprecated by torch and still served (the answer warns,
        and this raises a :class:`FutureWarning`). ``format``: ``export``,
        ``handler`` or ``torchscript``; by default from the file's suffix."""
        return self.register_model(artifact_path, manifest, format=format, progress=progress).key

    def profile(self, artifact_path: str | PathLike[str], manifest: dict[str, Any], *,
                format: str | None = None) -> api.Profiled:
        """Profile an artifact without registering it: FLOPs, predicted latency, recommendation."""
        return self._send(_requests.profile(_Upload(Path(artifact_path), manifest, format, None)))

    # keys

    def keys(self, name: str) -> list[api.Key]:
        return self._send(_requests.keys(name))

    def create_key(self, name: str, label: str = "default") -> api.KeyCreated:
        """A new key for ``name``; its ``key`` is shown only this once."""
        return self._send(_requests.create_key(name, label))

    def rotate_key(self, name: str, key_id: str) -> api.KeyCreated:
        """A new secret under the key's label; the old key stops working."""
        return self._send(_requests.rotate_key(name, key_id))

    def revoke_key(self, name: str, key_id: str) -> api.Revoked:
        return self._send(_requests.revoke_key(name, key_id))

    # cluster

    def cluster(self) -> api.Cluster:
        """Nodes, worker types, and your models' status, replicas and live numbers."""
        return self._send(_requests.cluster())

    def _send(self, call: _Call[Answer]) -> Answer:
        url = self._url(call.path)
        try:
            with call.arguments() as arguments:
                response = self._http.request(call.method, url, headers=self._headers, **arguments)
        except httpx.TransportError as exc:
            raise transport_error(url, exc) from exc
        return call.answer(response)


class AsyncManagerClient(BaseClient):
    """The asynchronous twin of :class:`ManagerClient`: the same methods and
    answers, awaited."""

    def __init__(self, url: str, token: str | None = None, *, timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
                 http_transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(url, token)
        self._http = httpx.AsyncClient(timeout=timeout, transport=http_transport)

    async def login(self, username: str, password: str, label: str = "sdk") -> str:
        token = (await self.create_token(label, username=username, password=password)).token
        self.use_token(token)
        return token

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # accounts

    async def signup(self, username: str, password: str, *, invite: str | None = None) -> api.User:
        return await self._send(_requests.signup(username, password, invite))

    async def create_token(self, label: str = "api", *, username: str | None = None,
                           password: str | None = None) -> api.TokenCreated:
        return await self._send(_requests.create_token(label, username, password))

    async def tokens(self) -> list[api.Token]:
        return await self._send(_requests.tokens())

    async def revoke_token(self, token_id: str) -> api.Revoked:
        return await self._send(_requests.revoke_token(token_id))

    async def me(self) -> api.Me:
        return await self._send(_requests.me())

    # the admin's

    async def create_invite(self, label: str = "invite", *, expires_in_s: int | None = None,
                            single_use: bool = True) -> api.InviteCreated:
        return await self._send(_requests.create_invite(label, expires_in_s, single_use))

    async def invites(self) -> list[api.Invite]:
        return await self._send(_requests.invites())

    async def revoke_invite(self, invite_id: str) -> api.Revoked:
        return await self._send(_requests.revoke_invite(invite_id))

    async def set_trusted(self, username: str, trusted: bool = True) -> api.Trust:
        return await self._send(_requests.set_trusted(username, trusted))

    # models and versions

    async def list_models(self) -> list[api.Model]:
        return await self._send(_requests.list_models())

    async def get_model(self, name: str) -> api.ModelDetail:
        return await self._send(_requests.get_model(name))

    async def versions(self, name: str) -> list[api.Version]:
        return await self._send(_requests.versions(name))

    async def get_version(self, name: str, version: int) -> api.Version:
        return await self._send(_requests.get_version(name, version))

    async def pin(self, name: str, version: int | None) -> api.Pinned:
        return await self._send(_requests.pin(name, version))

    async def delete_model(self, name: str) -> api.Deleted:
        return await self._send(_requests.delete_model(name))

    async def register_model(self, artifact_path: str | PathLike[str], manifest: dict[str, Any], *,
                             format: str | None = None, progress: Progress | None = None) -> api.Registered:
        return await self._send(_requests.register_model(_Upload(Path(artifact_path), manifest, format, progress)))

    async def register(self, artifact_path: str | PathLike[str], manifest: dict[str, Any], *,
                       format: str | None = None, progress: Progress | None = None) -> str | None:
        return (await self.register_model(artifact_path, manifest, format=format, progress=progress)).key

    async def profile(self, artifact_path: str | PathLike[str], manifest: dict[str, Any], *,
                      format: str | None = None) -> api.Profiled:
        return await self._send(_requests.profile(_Upload(Path(artifact_path), manifest, format, None)))

    # keys

    async def keys(self, name: str) -> list[api.Key]:
        return await self._send(_requests.keys(name))

    async def create_key(self, name: str, label: str = "default") -> api.KeyCreated:
        return await self._send(_requests.create_key(name, label))

    async def rotate_key(self, name: str, key_id: str) -> api.KeyCreated:
        return await self._send(_requests.rotate_key(name, key_id))

    async def revoke_key(self, name: str, key_id: str) -> api.Revoked:
        return await self._send(_requests.revoke_key(name, key_id))

    # cluster

    async def cluster(self) -> api.Cluster:
        return await self._send(_requests.cluster())

    async def _send(self, call: _Call[Answer]) -> Answer:
        url = self._url(call.path)
        try:
            with call.arguments() as arguments:
                response = await self._http.request(call.method, url, headers=self._headers, **arguments)
        except httpx.TransportError as exc:
            raise transport_error(url, exc) from exc
        return call.answer(response)
