"""The registry commands of ``seedserve``: ``login``, ``models``, ``register``,
``versions``, ``keys`` and ``delete``, and the admin's ``invites`` and
``users trust|untrust``, over :class:`ManagerClient`.

``login`` stores the manager's URL and a new API token in
``$SEEDSERVE_CONFIG_DIR/credentials.json`` (default ``~/.config/seedserve``),
readable by the user only; ``--url`` / ``--token`` (or ``SEEDSERVE_MANAGER_URL``
/ ``SEEDSERVE_TOKEN``) override it per command.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from seedserve.client.manager import ManagerClient
from seedserve.errors import SeedserveError

__all__ = ["commands"]

DEFAULT_URL = "http://127.0.0.1:8080"

Command = TypeVar("Command", bound=Callable[..., Any])


def credentials_path() -> Path:
    from seedserve.settings import Settings

    return (Settings().config_dir or Path.home() / ".config" / "seedserve") / "credentials.json"


@dataclass
class Target:
    url: str | None
    token: str | None


def _connection(target: Target) -> tuple[str, str]:
    saved: dict[str, str] = {}
    path = credentials_path()
    if path.exists():
        saved = json.loads(path.read_text())
    url = target.url or saved.get("url") or DEFAULT_URL
    token = target.token or saved.get("token")
    if not token:
        raise click.ClickException("not signed in: run `seedserve login` (or pass --token / set SEEDSERVE_TOKEN)")
    return url, token


@contextmanager
def _manager(target: Target) -> Iterator[ManagerClient]:
    url, token = _connection(target)
    try:
        with ManagerClient(url, token) as client:
            yield client
    except SeedserveError as exc:
        where = f" (input: {exc.input})" if exc.input else ""
        raise click.ClickException(f"{exc.code}: {exc.message}{where}") from None


_url_option = click.option("--url", envvar="SEEDSERVE_MANAGER_URL", help="Manager URL [default: saved, or "
                                                                         f"{DEFAULT_URL}].")
_token_option = click.option("--token", envvar="SEEDSERVE_TOKEN", help="API token [default: the one `login` saved].")


def _target(command: Command) -> Command:
    """``command`` with the ``--url`` and ``--token`` options."""
    return _url_option(_token_option(command))


def _when(moment: datetime) -> str:
    """A timestamp as the tables show it: ``2026-01-02T03:04:05``, to the second."""
    return moment.isoformat()[:19]


def _table(rows: list[list[Any]], header: list[str]) -> None:
    cells = [header, *[[("" if c is None else str(c)) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


@click.command()
@click.option("--url", envvar="SEEDSERVE_MANAGER_URL", default=DEFAULT_URL, show_default=True, help="Manager URL.")
@click.option("--username", prompt=True, help="Your username.")
@click.option("--password", prompt=True, hide_input=True, help="Your password (prompted if not given).")
@click.option("--signup", is_flag=True, help="Create the account first.")
@click.option("--invite", help="With --signup: the invite code the admin gave you (where sign-up is by invitation).")
@click.option("--label", default="cli", show_default=True, help="Label of the API token this creates.")
def login(url: str, username: str, password: str, signup: bool, invite: str | None, label: str) -> None:
    """Sign in: create an API token and save it (with the URL) for the other commands."""
    if invite is not None and not signup:
        raise click.UsageError("--invite is for creating an account: add --signup")
    try:
        with ManagerClient(url) as client:
            if signup:
                client.signup(username, password, invite=invite)
            token = client.create_token(label, username=username, password=password)
    except SeedserveError as exc:
        raise click.ClickException(f"{exc.code}: {exc.message}") from None
    path = credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created readable by the user only, before the token is written into it.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"url": url, "token": token.token, "token_id": token.id, "username": username}, out)
    click.echo(f"signed in as {username} at {url}; token {token.id} saved in {path}")


@click.command()
@_target
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def models(url: str | None, token: str | None, as_json: bool) -> None:
    """List your models."""
    with _manager(Target(url, token)) as client:
        found = client.list_models()
    if as_json:
        click.echo(json.dumps([m.model_dump(mode="json") for m in found], indent=2))
        return
    _table([[m.name, m.version, m.latest, m.pinned, len(m.keys), m.endpoints["predict"]]
            for m in found], ["NAME", "SERVING", "LATEST", "PINNED", "KEYS", "ENDPOINT"])


@click.command()
@_target
@click.argument("artifact", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--manifest", "manifest_path", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The model's manifest (JSON).")
@click.option("--name", help="Register under this name instead of the manifest's.")
@click.option("--format", "fmt", type=click.Choice(["torchscript", "export", "handler"]),
              help="Artifact format [default: from the suffix: .pt2 export, .zip handler, else torchscript].")
def register(url: str | None, token: str | None, artifact: Path, manifest_path: Path, name: str | None,
             fmt: str | None) -> None:
    """Register ARTIFACT (a new model, or the next version of yours), with an upload progress bar."""
    try:
        manifest = json.loads(manifest_path.read_text())
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--manifest") from None
    if name:
        manifest["name"] = name
    size = artifact.stat().st_size
    with _manager(Target(url, token)) as client, click.progressbar(length=size, label="uploading", file=None) as bar:
        shown = 0

        def progress(sent: int, total: int) -> None:
            nonlocal shown
            bar.update(sent - shown)
            shown = sent

        answer = client.register_model(artifact, manifest, format=fmt, progress=progress)
    click.echo(f"{answer.name}: version {answer.version} registered")
    for text in answer.warnings:
        click.echo(f"warning: {text}", err=True)
    if answer.key:
        click.echo(f"key (shown only once): {answer.key}")
    recommendation = answer.recommendation
    if recommendation:
        click.echo(f"recommendation: {recommendation['reasoning']}")


@click.command()
@_target
@click.argument("name")
@click.option("--pin", "pin_to", type=int, help="Serve this version at the model's endpoint (roll back).")
@click.option("--unpin", is_flag=True, help="Follow the latest version again.")
def versions(url: str | None, token: str | None, name: str, pin_to: int | None, unpin: bool) -> None:
    """List NAME's versions; --pin N serves version N."""
    with _manager(Target(url, token)) as client:
        if pin_to is not None or unpin:
            pinned = client.pin(name, None if unpin else pin_to)
            click.echo(f"{name} now serves version {pinned.version}")
        found = client.versions(name)
    _table([[v.version, "*" if v.serving else "", v.artifact.format, v.artifact.size, _when(v.created_at)]
            for v in found], ["VERSION", "SERVING", "FORMAT", "BYTES", "CREATED"])


@click.group()
def keys() -> None:
    """A model's secret keys: list, create, rotate, revoke."""


@keys.command("list")
@_target
@click.argument("name")
def list_keys(url: str | None, token: str | None, name: str) -> None:
    """NAME's keys (ids and labels; secrets are never shown again)."""
    with _manager(Target(url, token)) as client:
        found = client.keys(name)
    _table([[k.id, k.label, _when(k.created_at)] for k in found], ["ID", "LABEL", "CREATED"])


@keys.command("create")
@_target
@click.argument("name")
@click.option("--label", default="default", show_default=True)
def create_key(url: str | None, token: str | None, name: str, label: str) -> None:
    """A new key for NAME (printed once)."""
    with _manager(Target(url, token)) as client:
        key = client.create_key(name, label)
    click.echo(f"key {key.id} ({key.label}), shown only once: {key.key}")


@keys.command("rotate")
@_target
@click.argument("name")
@click.argument("key_id")
def rotate_key(url: str | None, token: str | None, name: str, key_id: str) -> None:
    """A new secret for KEY_ID's label; the old key stops working."""
    with _manager(Target(url, token)) as client:
        key = client.rotate_key(name, key_id)
    click.echo(f"key {key.id} replaces {key_id}, shown only once: {key.key}")


@keys.command("revoke")
@_target
@click.argument("name")
@click.argument("key_id")
def revoke_key(url: str | None, token: str | None, name: str, key_id: str) -> None:
    """Revoke KEY_ID: queries with it are refused within seconds."""
    with _manager(Target(url, token)) as client:
        client.revoke_key(name, key_id)
    click.echo(f"revoked {key_id}")


@click.command()
@_target
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete(url: str | None, token: str | None, name: str, yes: bool) -> None:
    """Delete NAME, every version and its artifacts."""
    if not yes:
        click.confirm(f"delete {name} and every version?", abort=True)
    with _manager(Target(url, token)) as client:
        answer = client.delete_model(name)
    click.echo(f"deleted {answer.deleted} ({answer.versions} version(s))")


_DURATION = re.compile(r"^(\d+)([smhd]?)$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: str) -> int:
    """Seconds in ``90``, ``90s``, ``30m``, ``12h`` or ``7d``."""
    match = _DURATION.match(value.strip().lower())
    if not match or int(match.group(1)) == 0:
        raise click.BadParameter(f"{value!r} is not a duration; use e.g. 90s, 30m, 12h or 7d",
                                 param_hint="--expires-in")
    return int(match.group(1)) * _UNIT_S[match.group(2)]


@click.group()
def invites() -> None:
    """Invite codes for sign-up (SEEDSERVE_SIGNUP=invite); admin token only."""


@invites.command("create")
@_target
@click.option("--label", default="invite", show_default=True, help="A note on who the code is for.")
@click.option("--expires-in", help="Valid for this long: e.g. 30m, 12h, 7d [default: no expiry].")
@click.option("--reusable", is_flag=True, help="Any number of sign-ups may use it [default: single use].")
def create_invite(url: str | None, token: str | None, label: str, expires_in: str | None, reusable: bool) -> None:
    """A new invite code (printed once)."""
    seconds = None if expires_in is None else parse_duration(expires_in)
    with _manager(Target(url, token)) as client:
        invite = client.create_invite(label, expires_in_s=seconds, single_use=not reusable)
    expiry = f"expires {_when(invite.expires_at)}" if invite.expires_at else "no expiry"
    click.echo(f"invite {invite.id} ({invite.label}, {'single use' if invite.single_use else 'reusable'}, "
               f"{expiry}), shown only once: {invite.code}")


@invites.command("list")
@_target
def list_invites(url: str | None, token: str | None) -> None:
    """Every invite: id, label, expiry and uses (codes are never shown again)."""
    with _manager(Target(url, token)) as client:
        found = client.invites()
    _table([[i.id, i.label, "single" if i.single_use else "reusable", _when(i.expires_at) if i.expires_at else "never",
             i.uses, ",".join(i.used_by)] for i in found], ["ID", "LABEL", "USE", "EXPIRES", "USES", "USED BY"])


@invites.command("revoke")
@_target
@click.argument("invite_id")
def revoke_invite(url: str | None, token: str | None, invite_id: str) -> None:
    """Revoke INVITE_ID: sign-ups with its code are refused from now on."""
    with _manager(Target(url, token)) as client:
        client.revoke_invite(invite_id)
    click.echo(f"revoked {invite_id}")


@click.group()
def users() -> None:
    """Accounts: trust one with handler packages (SEEDSERVE_HANDLERS=trusted); admin token only."""


@users.command("trust")
@_target
@click.argument("name")
def trust(url: str | None, token: str | None, name: str) -> None:
    """Let NAME register handler packages (Python code seedserve runs)."""
    with _manager(Target(url, token)) as client:
        client.set_trusted(name, True)
    click.echo(f"{name} is trusted: it may register handler packages")


@users.command("untrust")
@_target
@click.argument("name")
def untrust(url: str | None, token: str | None, name: str) -> None:
    """Stop NAME registering handler packages (what it registered stays)."""
    with _manager(Target(url, token)) as client:
        client.set_trusted(name, False)
    click.echo(f"{name} is no longer trusted: it may register TorchScript and torch.export artifacts only")


commands = [login, models, register, versions, keys, delete, invites, users]
