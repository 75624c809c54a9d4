"""``seedserve up``: start every component (each once what it needs answers), print the URLs, wait for
Ctrl-C, and stop every child in reverse order."""

from __future__ import annotations

import logging
import shlex
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from seedserve.cluster.components import (
    Starting,
    deploy_system,
    ensure_admin_token,
    grpc_address,
    http_ok,
    launch_database,
    launch_grpc,
    launch_manager,
    launch_ray_head,
    log_environ,
    start_database,
    start_grpc,
    start_manager,
)
from seedserve.cluster.environment import check_serve_imports
from seedserve.cluster.ports import PortPlan, busy_ports
from seedserve.cluster.processes import Child, supervise, wait_until
from seedserve.deployments.serve_api import ray_auth_token
from seedserve.sandbox import check_available, mechanisms
from seedserve.settings import Settings, is_loopback

__all__ = ["JOIN_TYPE", "PortBusy", "join_command", "join_lines", "policy_line", "run_up", "ports_to_check"]

#: The placeholder in the printed join command for the joining host's worker type.
JOIN_TYPE = "TYPE"

logger = logging.getLogger("seedserve.up")


class PortBusy(Exception):
    """A port seedserve needs is taken."""


def ports_to_check(settings: Settings) -> dict[str, int]:
    ports = {"master port": settings.master_port, "manager port": settings.manager_port,
             "gRPC port": settings.grpc_port}
    if settings.mongo_uri is None:
        ports["database port"] = settings.db_port
    if settings.ray_address is None:
        ports["Ray port"] = settings.ray_port
        ports["Ray dashboard port"] = settings.dashboard_port
        for offset in (0, 2, 10, 12):  # a sample of the internal block
            port = settings.internal_port_base + offset
            ports[f"internal port {port} (SEEDSERVE_INTERNAL_PORT_BASE={settings.internal_port_base})"] = port
    return ports


def policy_line(settings: Settings) -> str:
    """The effective sign-up and handler policy, as `seedserve up` prints it."""
    where = "loopback" if is_loopback(settings.host) else f"{settings.host}, beyond loopback"
    return (f"sign-up: {settings.signup}, handler packages: {settings.handlers} "
            f"(listening on {where}; set SEEDSERVE_SIGNUP / SEEDSERVE_HANDLERS to change)")


def join_command(settings: Settings, ray_token: str | None) -> str:
    """The command that joins another machine to this head as a worker host.

    Beyond loopback it carries Ray's cluster token in ``RAY_AUTH_TOKEN``
    (an environment variable, not an argument: other users of that machine
    can read a process's arguments, not its environment); on loopback, a
    node on this machine finds the token where the head left it."""
    host = f"[{settings.advertise}]" if ":" in settings.advertise else settings.advertise
    command = f"seedserve worker join --address {host}:{settings.ray_port} --type {JOIN_TYPE}"
    if ray_token and not is_loopback(settings.advertise):
        command = f"RAY_AUTH_TOKEN={shlex.quote(ray_token)} {command}"
    return command


def join_lines(settings: Settings, ray_token: str | None) -> str:
    """What `seedserve up` prints about worker hosts."""
    where = ("on this machine (start with --advertise ADDRESS to let other machines join)"
             if is_loopback(settings.advertise) else "on another machine, with seedserve installed")
    return (f"  worker hosts: run {where}, {JOIN_TYPE} being its worker type (configs/workers.yaml):\n"
            f"    {join_command(settings, ray_token)}")


def _check_can_start(settings: Settings) -> None:
    """Refuse to start when the sandbox, Serve's imports or a port is missing."""
    check_available()  # before anything starts: no user code may run unsandboxed
    check_serve_imports()  # else Ray's head would start and its Serve API never answer
    busy = busy_ports(settings.host, ports_to_check(settings))
    if busy:
        name, port = next(iter(busy.items()))
        raise PortBusy(
            f"{name} {port} on {settings.host} is already in use (is another seedserve running?); "
            f"stop it or choose another port (see `seedserve up --help`)"
        )


def _with_logging(settings: Settings, echo: Callable[[str], None]) -> Settings:
    """The settings with every process's log file set; logging configured and announced."""
    logs = log_environ(settings)
    settings = settings.model_copy(update={"log_file": Path(logs["SEEDSERVE_LOG_FILE"])})
    settings.configure_logging("up")
    echo(f"seedserve's log lines from every process: {logs['SEEDSERVE_LOG_FILE']} ({settings.log_format}, "
         f"{settings.log_level} and up; set SEEDSERVE_LOG_FILE, SEEDSERVE_LOG_FORMAT, SEEDSERVE_LOG_LEVEL to change); "
         "Ray's processes also write them to Ray's log directory")
    how = mechanisms()
    echo(f"user code runs sandboxed (bubblewrap, {how['user']}, no network; memory "
         f"{settings.sandbox_memory_bytes / 2**30:g} GiB and {settings.sandbox_processes} processes: {how['memory']})")
    return settings


class _Timeline:
    """When each component of `seedserve up` was ready, logged as "up: <what>
    ready in S s (at T s)": S from its launch, T from the start of `seedserve
    up` (benchmarks/first_answer.py reads these)."""

    def __init__(self) -> None:
        self.began = time.monotonic()

    def ready(self, what: str, since: float) -> None:
        now = time.monotonic()
        logger.info("up: %s ready in %.2f s (at %.2f s)", what, now - since, now - self.began)

    def wait(self, starting: Starting) -> Child:
        child = starting.wait()
        self.ready(starting.what, starting.launched)
        return child


def _launched(starting: Starting, children: list[Child], restart: Callable[[], Child] | None = None) -> Starting:
    """``starting``'s child, supervised from now on (and restarted by ``restart`` if it dies)."""
    starting.child.restart = restart
    children.append(starting.child)
    return starting


def _start_all(settings: Settings, plan: PortPlan, token: str, children: list[Child],
               echo: Callable[[str], None], timeline: _Timeline) -> str:
    """Start every component, each as soon as what it needs answers; the
    master's URL once everything answers. The database and Ray's head start
    together; the manager needs only the database, the gRPC service only
    Ray's head."""
    database = ray = None
    if settings.mongo_uri is None:
        echo(f"starting the embedded database on 127.0.0.1:{settings.db_port}")
        # Queries keep being served while it is away (replicas cache their
        # keys); the manager answers 503 until it is back.
        database = _launched(launch_database(settings), children, lambda: start_database(settings))
    if settings.ray_address is None:
        echo("starting a local Ray head")
        ray = _launched(launch_ray_head(settings, plan), children)
    with ThreadPoolExecutor(max_workers=2) as pool:
        # The manager and the gRPC service are waited for meanwhile, so each is logged when it is ready.
        if database is not None:
            timeline.wait(database)
        echo("starting the manager")
        manager = _launched(launch_manager(settings, token), children, lambda: start_manager(settings, token))
        frontends = [pool.submit(timeline.wait, manager)]
        if ray is not None:
            timeline.wait(ray)
        echo("deploying the master and the registered models")
        master_url = f"http://{settings.host}:{settings.master_port}"
        deployed = time.monotonic()
        deploy_system(settings, plan, token)
        echo("starting the gRPC inference service")
        inference = _launched(launch_grpc(settings), children, lambda: start_grpc(settings))
        frontends.append(pool.submit(timeline.wait, inference))
        wait_until(lambda: http_ok(master_url + "/v2/health/ready"), 180, "master")
        timeline.ready("master", deployed)
        for ready in frontends:
            ready.result()
    return master_url


def _ready_banner(settings: Settings, master_url: str) -> str:
    """What `seedserve up` prints once everything answers."""
    admin_token = settings.admin_token_file if settings.admin_token is None else "$SEEDSERVE_ADMIN_TOKEN"
    # Joining another cluster (RAY_ADDRESS): its own head says how to join.
    joining = "" if settings.ray_address else join_lines(settings, ray_auth_token()) + "\n"
    return (
        f"seedserve is up\n  master:  {master_url}\n"
        f"  manager: http://{settings.host}:{settings.manager_port}\n"
        f"  grpc:    {grpc_address(settings.host, settings.grpc_port)} "
        "(KServe v2 inference, as tritonclient.grpc speaks it)\n"
        f"  admin token: {admin_token}\n"
        f"  {policy_line(settings)}\n"
        f"{joining}"
        "Press Ctrl-C to stop."
    )


def run_up(settings: Settings, echo: Callable[[str], None]) -> None:
    """Run the system in the foreground until SIGINT or SIGTERM."""
    timeline = _Timeline()
    _check_can_start(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings = _with_logging(settings, echo)
    timeline.ready("checks (sandbox, Serve's imports, ports)", timeline.began)
    token = ensure_admin_token(settings)
    plan = PortPlan(settings.internal_port_base)

    def start(children: list[Child]) -> None:
        master_url = _start_all(settings, plan, token, children, echo, timeline)
        echo(_ready_banner(settings, master_url))
        timeline.ready("everything", timeline.began)

    supervise(start, echo)
