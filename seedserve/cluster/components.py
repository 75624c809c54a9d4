"""Starting each component of a local seedserve system.

Each function starts one thing, waits until it answers, and returns the
child to stop later; ``up.py`` puts them in order.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pymongo

from seedserve.cluster.haproxy import install_wrapper
from seedserve.cluster.ports import PortPlan
from seedserve.cluster.processes import Child, environ_with, start_child, wait_until
from seedserve.deployments import deploy_config, master_application
from seedserve.deployments.serve_config import worker_resource
from seedserve.registry.key_hashes import hash_key
from seedserve.settings import Settings, is_loopback

__all__ = [
    "HAPROXY_ENV",
    "RAY_NODE_SECRETS",
    "ray_node_environ",
    "log_environ",
    "operator_token_hashes",
    "ensure_admin_token",
    "Starting",
    "launch_database",
    "launch_ray_head",
    "launch_manager",
    "launch_grpc",
    "start_database",
    "start_ray_head",
    "deploy_system",
    "start_manager",
    "start_grpc",
    "grpc_address",
    "http_ok",
]

_BIN = Path(sys.executable).parent

#: Every Ray node of a seedserve cluster runs with these: one hop per query,
#: HAProxy routing straight to each model's ingress replica.
HAPROXY_ENV = {
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
}


@dataclass(frozen=True)
class Starting:
    """A component whose process runs but may not answer yet: ``seedserve up``
    launches those that do not need each other at once and waits for each
    where the next step needs it."""

    child: Child
    ready: Callable[[], bool]
    timeout_s: float
    what: str
    #: ``time.monotonic()`` at launch
    launched: float = field(default_factory=time.monotonic)

    def wait(self) -> Child:
        """The child, once it answers (raises with its log if it dies or times out)."""
        wait_until(self.ready, self.timeout_s, self.what, self.child)
        return self.child


def ensure_admin_token(settings: Settings) -> str:
    """The admin token: from the environment, else ``<data dir>/admin-token``
    (created once, readable by its owner only)."""
    if settings.admin_token is not None:
        return settings.admin_token.get_secret_value()
    path = settings.admin_token_file
    if path.exists():
        return path.read_text().strip()
    token = "adm_" + secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    return token


def start_database(settings: Settings) -> Child:
    """The embedded MongoDB-wire server on ``<data dir>/seedserve.db``, once it answers."""
    return launch_database(settings).wait()


def launch_database(settings: Settings) -> Starting:
    """The embedded MongoDB-wire server on ``<data dir>/seedserve.db``, launched."""
    data = settings.data_dir.resolve()
    child = start_child(
        "database",
        [
            str(_BIN / "nx-27017"),
            "--db", str(data / "seedserve.db"),
            "--host", "127.0.0.1",
            "--port", str(settings.db_port),
            # Its default pid file is one per machine; keep ours in the data dir.
            "--pid-file", str(data / "nx-27017.pid"),
            "--log-file", str(data / "logs" / "database.log"),
        ],
        data / "logs" / "database.out",
    )
    return Starting(child, lambda: _mongo_answers(settings.resolved_mongo_uri), 30, "embedded database")


def _mongo_answers(uri: str) -> bool:
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(uri, serverSelectionTimeoutMS=500)
    try:
        return bool(client.admin.command("ping"))
    finally:
        client.close()


#: Secrets of ours that no Ray process may inherit: every replica, user
#: code's included, starts with its node's environment. The master gets its
#: database URI through its application args; model replicas need none.
RAY_NODE_SECRETS = ("SEEDSERVE_MONGO_URI", "SEEDSERVE_ADMIN_TOKEN", "SEEDSERVE_METRICS_TOKEN")


def ray_node_environ(extra: dict[str, str], wrapper_dir: Path) -> dict[str, str]:
    """The environment of a Ray node: ours without :data:`RAY_NODE_SECRETS`,
    plus ``extra``, plus HAProxy through seedserve's wrapper (see
    :mod:`seedserve.cluster.haproxy`), installed into ``wrapper_dir``."""
    env = {k: v for k, v in environ_with({**HAPROXY_ENV, **extra}).items() if k not in RAY_NODE_SECRETS}
    env["RAY_SERVE_HAPROXY_BINARY_PATH"] = str(install_wrapper(wrapper_dir))
    return env


def log_environ(settings: Settings) -> dict[str, str]:
    """What tells a child process where and how seedserve logs: the resolved
    log file (absolute: Ray's workers run elsewhere), format and level."""
    log_file = settings.log_file or settings.default_log_file
    return {"SEEDSERVE_LOG_FILE": str(log_file.resolve()), "SEEDSERVE_LOG_FORMAT": settings.log_format,
            "SEEDSERVE_LOG_LEVEL": settings.log_level}


def start_ray_head(settings: Settings, plan: PortPlan) -> Child:
    """A local Ray head (``ray start --head --block``; SIGTERM stops the whole node), once its dashboard answers."""
    return launch_ray_head(settings, plan).wait()


def launch_ray_head(settings: Settings, plan: PortPlan) -> Starting:
    """A local Ray head, launched; ready once its dashboard serves Serve's REST API."""
    data = settings.data_dir.resolve()
    env = ray_node_environ({**plan.serve_env(), **ray_token_auth(), **log_environ(settings)}, data / "bin")
    argv = [
        str(_BIN / "ray"), "start", "--head", "--block",
        f"--port={settings.ray_port}",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={settings.dashboard_port}",
        f"--resources={json.dumps({worker_resource(settings.worker_type): 1000})}",
        "--disable-usage-stats",
        *plan.ray_start_args(),
    ]
    if settings.num_cpus is not None:
        argv.append(f"--num-cpus={settings.num_cpus}")
    if not is_loopback(settings.advertise):
        # Ray's node address: what worker hosts reach (GCS, raylet, object
        # manager, workers) and what the head registers itself under. Given,
        # Ray does not guess it by routing towards a public address. (Given
        # a loopback address, Ray would put that guess in its place anyway.)
        argv.append(f"--node-ip-address={settings.advertise}")
    if settings.ray_temp_dir is not None:
        argv.append(f"--temp-dir={settings.ray_temp_dir.resolve()}")
    child = start_child("ray", argv, data / "logs" / "ray.out", env=env)
    url = dashboard_url(settings)
    return Starting(child, lambda: http_ok(url + "/api/serve/applications/", auth=True), 120, "Ray head and dashboard")


def ray_token_auth() -> dict[str, str]:
    """Ray's token authentication, always on unless ``RAY_AUTH_MODE`` says
    otherwise: ``ray start --head`` turns it on only where a token already
    exists, so a fresh machine would run an open cluster (anyone who reaches
    it runs code). The token is made where Ray's own tools look for it
    (``ray get-auth-token --generate``: ``~/.ray/auth_token``, mode 0600, or
    ``RAY_AUTH_TOKEN`` / ``RAY_AUTH_TOKEN_PATH`` if set)."""
    if os.environ.get("RAY_AUTH_MODE", "token").lower() != "token":
        return {}
    if not _ray_token_exists():  # Ray's command takes seconds (it imports Ray): only when there is none
        subprocess.run([str(_BIN / "ray"), "get-auth-token", "--generate"], check=True, capture_output=True,
                       timeout=60)
    default = Path.home() / ".ray" / "auth_token"
    if not os.environ.get("RAY_AUTH_TOKEN_PATH") and default.exists():
        default.chmod(0o600)  # Ray writes it readable by all
    return {"RAY_AUTH_MODE": "token"}


def _ray_token_exists() -> bool:
    """Whether Ray's tools find a token: ``RAY_AUTH_TOKEN``, else a non-empty
    file at ``RAY_AUTH_TOKEN_PATH``, else at ``~/.ray/auth_token``."""
    if os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return True
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    try:
        return bool(path.read_text().strip())
    except OSError:
        return False


def dashboard_url(settings: Settings) -> str:
    if settings.ray_address:
        host = settings.ray_address.removeprefix("ray://").split(":")[0]
        return f"http://{host}:{settings.dashboard_port}"
    return f"http://127.0.0.1:{settings.dashboard_port}"


def operator_token_hashes(settings: Settings, admin_token: str) -> list[str]:
    """SHA-256 of each token that may read the master's operational
    endpoints: the admin token and, if set, the metrics token."""
    tokens = [admin_token] + ([settings.metrics_token.get_secret_value()] if settings.metrics_token else [])
    return [hash_key(token) for token in tokens]


def deploy_system(settings: Settings, plan: PortPlan, admin_token: str) -> None:
    """Submit the master as Serve's declarative config. The master's
    reconciler then deploys each registered model as an application of its
    own (seedserve.deployments.owned_apps), so this submission, like a
    KubeRay resubmission, leaves running model applications as they are."""
    master = master_application(
        mongo_uri=settings.resolved_mongo_uri,
        database=settings.database,
        dashboard_url=dashboard_url(settings),
        reconcile_interval_s=settings.reconcile_interval_s,
        token_sha256=operator_token_hashes(settings, admin_token),
        auto_calibrate=settings.auto_calibrate,
    )
    config = deploy_config(
        {"host": settings.host, "port": settings.master_port}, master, [], proxy_location=settings.proxy_location
    )
    config["grpc_options"] = {"port": plan.grpc_port()}
    from seedserve.deployments.serve_api import ray_auth_headers

    response = httpx.put(
        dashboard_url(settings) + "/api/serve/applications/", json=config, headers=ray_auth_headers(), timeout=60
    )
    if response.status_code >= 400:
        raise RuntimeError(f"Serve refused the config (HTTP {response.status_code}): {response.text[:2000]}")


def start_manager(settings: Settings, admin_token: str) -> Child:
    """The manager on uvicorn, configured through ``SEEDSERVE_*``, once it answers."""
    return launch_manager(settings, admin_token).wait()


def launch_manager(settings: Settings, admin_token: str) -> Starting:
    """The manager on uvicorn, launched (it needs the database, not Ray)."""
    data = settings.data_dir.resolve()
    env = environ_with(
        {
            "SEEDSERVE_DATA_DIR": str(data),
            "SEEDSERVE_MONGO_URI": settings.resolved_mongo_uri,
            "SEEDSERVE_DATABASE": settings.database,
            "SEEDSERVE_ADMIN_TOKEN": admin_token,
            "SEEDSERVE_MAX_ARTIFACT_BYTES": str(settings.max_artifact_bytes),
            # The effective policy, not the host: the manager does not get the
            # host in its environment, and its defaults would be loopback's.
            "SEEDSERVE_SIGNUP": settings.signup,
            "SEEDSERVE_HANDLERS": settings.handlers,
            **log_environ(settings),
        }
    )
    argv = [
        sys.executable, "-m", "uvicorn", "--factory", "seedserve.manager_app:create_app_from_env",
        "--host", settings.host, "--port", str(settings.manager_port), "--no-access-log",
    ]
    child = start_child("manager", argv, data / "logs" / "manager.out", env=env)
    return Starting(child, lambda: http_ok(f"http://{settings.host}:{settings.manager_port}/livez"), 60, "manager")


def grpc_address(host: str, port: int) -> str:
    """``host:port`` as gRPC writes a target (an IPv6 address in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def start_grpc(settings: Settings) -> Child:
    """The KServe v2 gRPC inference service, once it answers (see :func:`launch_grpc`)."""
    return launch_grpc(settings).wait()


def launch_grpc(settings: Settings) -> Starting:
    """The KServe v2 gRPC inference service (``python -m seedserve.grpc``), a
    Ray driver that calls model replicas through Serve handles, launched (it
    needs Ray's head, not the master). Like a Ray node it gets none of
    :data:`RAY_NODE_SECRETS`: it needs no database and no token, only Ray's
    cluster token (where Ray's tools read it)."""
    from seedserve.grpc.liveness import server_live

    data = settings.data_dir.resolve()
    ray_address = settings.ray_address or f"127.0.0.1:{settings.ray_port}"
    env = {k: v for k, v in environ_with(ray_token_auth()).items() if k not in RAY_NODE_SECRETS}
    env.pop("RAY_ADDRESS", None)  # given as an argument
    argv = [
        sys.executable, "-m", "seedserve.grpc",
        "--listen", grpc_address(settings.host, settings.grpc_port),
        "--ray-address", ray_address,
        "--dashboard-url", dashboard_url(settings),
        "--max-message-bytes", str(settings.grpc_max_message_bytes),
    ]
    child = start_child("grpc", argv, data / "logs" / "grpc.out", env=env)
    target = grpc_address("127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host, settings.grpc_port)
    return Starting(child, lambda: server_live(target), 120, "gRPC inference service")


def http_ok(url: str, *, auth: bool = False) -> bool:
    """Whether ``GET url`` answers 200."""
    headers: dict[str, str] = {}
    if auth:
        from seedserve.deployments.serve_api import ray_auth_headers

        headers = ray_auth_headers()
    try:
        return httpx.get(url, timeout=5, headers=headers).status_code == 200
    except httpx.HTTPError:
        return False
