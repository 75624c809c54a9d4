"""The ``seedserve`` command line: a thin shell over the cluster and the SDK.

Exit codes: 0 success, 1 a failed operation, 2 a bad invocation (Click's).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import httpx
from pydantic import ValidationError

from seedserve.cluster.registry_cli import commands as registry_commands
from seedserve.settings import Settings

if TYPE_CHECKING:
    from seedserve.profiler.calibrate import Calibration

__all__ = ["main"]


def _settings(**overrides: Any) -> Settings:
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise click.UsageError(str(exc)) from None


@click.group()
@click.version_option(package_name="seedserve")
def main() -> None:
    """seedserve: register PyTorch models and serve each as its own autoscaling deployment."""


@main.command()
@click.option("--data-dir", type=click.Path(path_type=Path), help="Data directory [env SEEDSERVE_DATA_DIR; default "
                                                                  "./seedserve-data].")
@click.option("--host", help="Address to listen on [default 127.0.0.1].")
@click.option("--master-port", type=int, help="Master (query) port [default 8000].")
@click.option("--manager-port", type=int, help="Manager (API) port [default 8080].")
@click.option("--grpc-port", type=int, help="KServe v2 gRPC inference port [default 8001].")
@click.option("--advertise", metavar="ADDRESS",
              help="This machine's address for worker hosts: Ray listens for them there, token-authenticated "
                   "[env SEEDSERVE_ADVERTISE; default 127.0.0.1: no other machine joins].")
def up(data_dir: Path | None, host: str | None, master_port: int | None, manager_port: int | None,
       grpc_port: int | None, advertise: str | None) -> None:
    """Start the database, Ray, the master, the manager and the gRPC service; Ctrl-C stops them."""
    from seedserve.cluster.environment import BrokenEnvironment
    from seedserve.cluster.up import PortBusy, run_up
    from seedserve.sandbox import SandboxUnavailable

    settings = _settings(data_dir=data_dir, host=host, master_port=master_port, manager_port=manager_port,
                         grpc_port=grpc_port, advertise=advertise)
    try:
        run_up(settings, click.echo)
    except (PortBusy, BrokenEnvironment) as exc:
        raise click.ClickException(str(exc)) from None
    except SandboxUnavailable as exc:
        raise click.ClickException(exc.message) from None
    except RuntimeError as exc:
        raise click.ClickException(f"seedserve could not start or stopped: {exc}") from None


@main.group()
def worker() -> None:
    """Worker nodes: more machines (or more nodes on this one) for the cluster."""


@worker.command()
@click.option("--address", required=True, help="The Ray head's HOST:PORT (the Ray port of `seedserve up`).")
@click.option("--type", "worker_type", required=True, help="Worker type this node advertises, e.g. gpu-l4.")
@click.option("--num-cpus", type=int, help="CPUs this node offers [default: all].")
@click.option("--num-gpus", type=click.FloatRange(min=0, min_open=True),
              help="GPUs this node offers, for a GPU worker type [default: those Ray finds].")
@click.option("--port-base", type=int, default=21500, show_default=True,
              help="First of 1,500 ports for this node's internal listeners (distinct per node on one machine).")
@click.option("--log-dir", type=click.Path(path_type=Path), default=Path("seedserve-data/logs"), show_default=True)
@click.option("--advertise", metavar="ADDRESS",
              help="This machine's address for the head and other nodes [default: the one on the route to --address].")
@click.option("--temp-dir", type=click.Path(path_type=Path), help="Ray's temporary directory on this node "
              "[default: ray/ under $RAY_TMPDIR, else $TMPDIR, else /tmp; never the head's].")
def join(address: str, worker_type: str, num_cpus: int | None, num_gpus: float | None, port_base: int,
         log_dir: Path, advertise: str | None, temp_dir: Path | None) -> None:
    """Join a running cluster as a worker node of type TYPE; Ctrl-C leaves."""
    import re

    from seedserve.cluster.worker import run_worker
    from seedserve.names import WORKER_TYPE_PATTERN
    from seedserve.profiler.catalog import load_catalog

    if not re.fullmatch(WORKER_TYPE_PATTERN, worker_type):
        raise click.BadParameter("lower-case letters, digits, '.' and '-'", param_hint="--type")
    catalog = load_catalog()
    if num_gpus is not None and any(t.name == worker_type and t.device == "cpu" for t in catalog.types):
        raise click.BadParameter(f"worker type {worker_type!r} is a CPU type in the catalog; drop --num-gpus "
                                 f"or use a GPU type ({', '.join(catalog.gpu_types())})", param_hint="--num-gpus")
    try:
        run_worker(address, worker_type, port_base=port_base, num_cpus=num_cpus, log_dir=log_dir, echo=click.echo,
                   num_gpus=num_gpus, advertise=advertise, temp_dir=temp_dir)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.option("--host", help="Address of the system [default 127.0.0.1].")
@click.option("--master-port", type=int, help="Master port [default 8000].")
@click.option("--manager-port", type=int, help="Manager port [default 8080].")
@click.option("--grpc-port", type=int, help="gRPC inference port [default 8001].")
def status(host: str | None, master_port: int | None, manager_port: int | None, grpc_port: int | None) -> None:
    """Report each component; exit 1 if any is down."""
    from seedserve.cluster.components import grpc_address
    from seedserve.grpc.liveness import server_live

    settings = _settings(host=host, master_port=master_port, manager_port=manager_port, grpc_port=grpc_port)
    healthy = True
    for name, port in (("master", settings.master_port), ("manager", settings.manager_port)):
        url = f"http://{settings.host}:{port}/healthz"
        try:
            response = httpx.get(url, timeout=5)
            report = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            click.echo(f"{name:8} DOWN  {url}: {exc}")
            healthy = False
            continue
        ok = response.status_code == 200 and report.get("status") == "ok"
        healthy &= ok
        down = report.get("down") if isinstance(report, dict) else None
        down_list = f"  down: {', '.join(map(str, down))}" if down else ""
        click.echo(f"{name:8} {'up' if ok else 'DEGRADED':5} {url}" + down_list)
        for component, state in report.get("components", {}).items():
            click.echo(f"  {component:12} {json.dumps(state) if not isinstance(state, str) else state}")
    target = grpc_address(settings.host, settings.grpc_port)
    live = server_live(target)
    healthy &= live
    click.echo(f"{'grpc':8} {'up' if live else 'DOWN':5} {target} (ServerLive)")
    _echo_models(settings)
    sys.exit(0 if healthy else 1)


def _echo_models(settings: Settings) -> None:
    """Each model application's status, and why it is not running, from the
    master's /cluster, when the admin token is at hand (it names models)."""
    token = settings.admin_token.get_secret_value() if settings.admin_token else None
    if token is None and settings.admin_token_file.is_file():
        token = settings.admin_token_file.read_text().strip()
    if not token:
        return
    try:
        response = httpx.get(f"{settings.resolved_master_url}/cluster", headers={"authorization": f"Bearer {token}"},
                             timeout=10)
        models = response.json().get("models", {}) if response.status_code == 200 else {}
    except (httpx.HTTPError, ValueError):
        return
    for name, entry in sorted(models.items()):
        for app in entry.get("applications", []):
            reason = f"  {app['reason']}" if app.get("reason") else ""
            click.echo(f"model {name} v{app['version']}: {app['status']} ({app['replicas']} replica(s)){reason}")


@main.command()
@click.option("--type", "worker_type",
              help="Only nodes of this worker type; with --here, the type to store this node's result for "
                   "[env SEEDSERVE_WORKER_TYPE; default cpu-local].")
@click.option("--here", is_flag=True, help="Measure the machine this command runs on, without Ray.")
@click.option("--address", help="The Ray head's HOST:PORT [default: the local head of `seedserve up`].")
@click.option("--threads", type=int, default=1, show_default=True,
              help="torch threads, as the replicas on this node run (one per replica by default).")
@click.option("--data-dir", type=click.Path(path_type=Path), help="Data directory of `seedserve up` "
                                                                  "(for its database).")
@click.option("--dry-run", is_flag=True, help="Print the fitted parameters; store nothing.")
def calibrate(worker_type: str | None, here: bool, address: str | None, threads: int, data_dir: Path | None,
              dry_run: bool) -> None:
    """Measure every node of the cluster (GEMM, convolution, recurrent,
    gather, elementwise and weight-streaming sweeps), each on its own node
    and all at once, and store the latency model of each worker type, which
    the manager's predictions then use. A type with several nodes stores its
    median node. Takes a minute or two; run it when the nodes are quiet."""
    settings = _settings(data_dir=data_dir)
    if here:
        results = _calibrate_here(worker_type or settings.worker_type, threads)
    else:
        results = _calibrate_nodes(address or settings.ray_address or f"127.0.0.1:{settings.ray_port}",
                                   threads, worker_type)
    click.echo(json.dumps({name: {"host": result.host, "call_overhead_s": result.call_overhead_s,
                                  "kinds": {kind: fit.model_dump() for kind, fit in result.kinds.items()}}
                           for name, result in results.items()}, indent=2))
    if not dry_run:
        _store_calibrations(settings, results)
        click.echo(f"stored the calibration of {', '.join(map(repr, results))}", err=True)


def _calibrate_here(name: str, threads: int) -> dict[str, Calibration]:
    """This machine's calibration, as worker type ``name``."""
    import torch

    from seedserve.profiler.calibrate import calibrate as run_calibration

    torch.set_num_threads(threads)
    click.echo(f"calibrating worker type {name!r} here with {threads} thread(s)...", err=True)
    return {name: run_calibration(name)}


def _calibrate_nodes(address: str, threads: int, worker_type: str | None) -> dict[str, Calibration]:
    """Every node's calibration of the cluster at ``address`` (or only ``worker_type``'s), one per type."""
    from seedserve.cluster.calibrate_nodes import calibrate_cluster

    try:
        return calibrate_cluster(address, threads, worker_type, say=lambda line: click.echo(line, err=True))
    except (RuntimeError, ConnectionError) as exc:
        raise click.ClickException(f"could not calibrate the cluster at {address}: {exc}") from exc


def _store_calibrations(settings: Settings, results: dict[str, Calibration]) -> None:
    """Store each type's calibration in the database of ``settings``."""
    import asyncio

    from seedserve.registry import ModelStore, connect

    async def store() -> None:
        client = connect(settings.resolved_mongo_uri)
        try:
            models = ModelStore(client[settings.database])
            for name, result in results.items():
                await models.put_calibration(name, result.model_dump(mode="json"))
        finally:
            await client.close()

    try:
        asyncio.run(store())
    except Exception as exc:  # the database is not running: say where it was looked for
        raise click.ClickException(f"could not store the calibration in {settings.resolved_mongo_uri}: {exc}") from exc


for _command in registry_commands:
    main.add_command(_command)
