"""Typed settings, read from ``SEEDSERVE_*`` environment variables.

Built once by whoever starts a process (``Settings()``); nothing reads the
environment at import time.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from seedserve.logs import LogFormat, LogLevel, configure
from seedserve.names import WORKER_TYPE_PATTERN
from seedserve.ratelimit import WRONG_KEYS_PER_MINUTE
from seedserve.sandbox import SandboxLimits

__all__ = ["HandlerPolicy", "Settings", "SignupPolicy", "is_loopback", "policy_defaults"]

#: Who may create an account: anyone, whoever holds an invite code, or only the admin.
SignupPolicy = Literal["open", "invite", "closed"]
#: Who may register handler packages (Python that seedserve runs): anyone,
#: trusted accounts and the admin, or nobody.
HandlerPolicy = Literal["all", "trusted", "none"]


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only: ``localhost``,
    127.0.0.0/8 or ``::1`` (bracketed or IPv4-mapped too). Any other name
    counts as exposed: a name may resolve to anything."""
    name = host.strip().strip("[]").rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def policy_defaults(host: str) -> tuple[SignupPolicy, HandlerPolicy]:
    """The (signup, handlers) policy when neither is set: open on loopback
    (only this machine's users reach it), invite-only sign-up and handler
    packages from trusted accounts once it listens beyond loopback."""
    return ("open", "all") if is_loopback(host) else ("invite", "trusted")


class Settings(BaseSettings):
    """Where seedserve listens, where it keeps data, and which services it uses."""

    model_config = SettingsConfigDict(env_prefix="SEEDSERVE_", extra="ignore")

    data_dir: Path = Field(
        default=Path("seedserve-data"),
        description="Directory for the embedded database file, the admin token and logs.",
    )
    host: str = Field(default="127.0.0.1", description="Address the master and the manager listen on.")
    master_port: int = Field(default=8000, ge=1, le=65535, description="HTTP port of the master (queries).")
    manager_port: int = Field(default=8080, ge=1, le=65535, description="HTTP port of the manager (API, dashboard).")
    grpc_port: int = Field(
        default=8001, ge=1, le=65535,
        description="Port of the KServe v2 gRPC inference service (queries, as tritonclient.grpc sends them).",
    )
    grpc_max_message_bytes: int = Field(
        default=64 * 2**20, ge=2**16,
        description="Largest gRPC message the inference service receives or sends; gRPC refuses a larger one "
        "(RESOURCE_EXHAUSTED) before reading it. A model's own max_body_bytes applies after that.",
    )
    master_url: str | None = Field(
        default=None,
        description="Where the manager reaches the master (dashboard, 'try it'). Unset: http://<host>:<master_port>.",
    )
    mongo_uri: str | None = Field(
        default=None,
        description="MongoDB URI. Unset: `seedserve up` starts the embedded MongoDB-wire server.",
    )
    database: str = Field(default="seedserve", description="MongoDB database name.")
    db_port: int = Field(default=27017, ge=1, le=65535, description="Port of the embedded database server.")
    admin_token: SecretStr | None = Field(
        default=None,
        description="Token for the manager's write API. Unset: generated into <data_dir>/admin-token.",
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="Token that may read the master's /metrics, /cluster and /-/routes (for a Prometheus "
        "scraper, say), besides the admin token. Unset: only the admin token may.",
    )
    ray_address: str | None = Field(
        default=None,
        validation_alias=AliasChoices("SEEDSERVE_RAY_ADDRESS", "RAY_ADDRESS"),
        description="Join this Ray cluster instead of starting a local head.",
    )
    advertise: str = Field(
        default="127.0.0.1",
        description="Address of this machine that worker hosts reach the Ray head on (`seedserve worker join "
        "--address ADVERTISE:RAY_PORT`): Ray's node address. Unset: loopback, so only nodes on this machine join. "
        "The public ports follow host; the embedded database and Ray's dashboard stay on loopback.",
    )
    ray_temp_dir: Path | None = Field(
        default=None, description="Ray's temporary directory on this node (`ray start --temp-dir`). Unset: Ray's "
        "default ($RAY_TMPDIR, else $TMPDIR, else /tmp, with ray/ under it).",
    )
    ray_port: int = Field(default=6379, ge=1, le=65535, description="GCS port of the local Ray head.")
    dashboard_port: int = Field(default=8265, ge=1, le=65535, description="Ray dashboard port (Serve REST API).")
    internal_port_base: int = Field(
        default=20000,
        ge=1024,
        le=64000,
        description="First of 1,500 ports for Ray's and Serve's internal listeners on this node.",
    )
    num_cpus: int | None = Field(default=None, ge=1, description="CPUs the local Ray head offers (default: all).")
    worker_type: str = Field(
        default="cpu-local", pattern=WORKER_TYPE_PATTERN, description="Worker type this node advertises."
    )
    proxy_location: Literal["HeadOnly", "EveryNode"] = Field(
        default="HeadOnly",
        description="Where Serve's ingress runs. EveryNode suits a cluster of machines; on one machine a second "
        "node's ingress would collide with the head's port.",
    )
    signup: SignupPolicy = Field(
        default_factory=lambda data: policy_defaults(data.get("host", ""))[0],
        description="Who may create an account: 'open' (anyone), 'invite' (with an invite code the admin made), "
        "'closed' (only the admin creates accounts). Unset: 'open' when host is loopback, else 'invite'.",
    )
    handlers: HandlerPolicy = Field(
        default_factory=lambda data: policy_defaults(data.get("host", ""))[1],
        description="Who may register handler packages (Python code seedserve runs): 'all', 'trusted' (accounts the "
        "admin marked trusted, and the admin), 'none'. TorchScript and torch.export artifacts are accepted from "
        "anyone. Unset: 'all' when host is loopback, else 'trusted'.",
    )
    max_artifact_bytes: int = Field(default=512 * 2**20, gt=0, description="Largest model artifact accepted.")
    sandbox_memory_bytes: int = Field(
        default=4 * 2**30, ge=256 * 2**20,
        description="Memory one sandboxed process of user code may use (a test-load, or a handler model's process "
        "in each replica); over it the kernel stops the process (a cgroup's memory limit).",
    )
    sandbox_processes: int = Field(
        default=64, ge=8, description="Processes and threads one sandboxed process of user code may have (pids cgroup)."
    )
    gpu_stand_in: str | None = Field(
        default=None,
        description="Only for tests on machines without a GPU: the device (e.g. 'cpu') that a replica of a model on "
        "a GPU worker type runs on instead of CUDA, set on the node that stands in for a GPU node. Unset (always in "
        "production): such a replica needs CUDA, and says 'CUDA is not available on this node' without it.",
    )
    spare_test_load: bool = Field(
        default=True,
        description="The manager keeps one test-load sandbox started ahead of the next registration, its imports "
        "(torch, the profiler) done, so a registration does not wait seconds for them; it holds no user code "
        "until it is used (once) and costs the memory of one idle Python process with torch.",
    )
    reconcile_interval_s: float = Field(default=2.0, gt=0, description="How often the master reconciles.")
    latency_report_s: float = Field(
        default=30.0, gt=0, description="How often each replica reports its measured model-call latency to the master."
    )
    wrong_keys_per_minute: int = Field(
        default=WRONG_KEYS_PER_MINUTE, ge=1,
        description="Wrong keys one replica answers with 401 per minute before 429 (raised only by benchmarks).",
    )
    workers_catalog: Path | None = Field(
        default=None, description="The worker types' catalog (YAML); unset: configs/workers.yaml of the source tree."
    )
    config_dir: Path | None = Field(
        default=None, description="Where the CLI keeps its credentials; unset: ~/.config/seedserve."
    )
    auto_calibrate: bool = Field(
        default=True,
        description="The master calibrates each worker type's latency model in the background, once per torch "
        "version, when a node of the type is first in the cluster and quiet (a minute or two of sweeps).",
    )
    orphan_age_s: float = Field(
        default=3600.0, gt=0,
        description="A starting manager deletes artifacts no version refers to once they are this old "
        "(younger ones may belong to a registration in progress on another manager).",
    )

    log_format: LogFormat = Field(
        default="text",
        description="seedserve's log lines: 'text' (one readable line each) or 'json' (one object a line)."
    )
    log_level: LogLevel = Field(default="INFO", description="The least severe of seedserve's log lines written: DEBUG, "
                                                            "INFO, WARNING or ERROR.")
    log_file: Path | None = Field(
        default=None,
        description="File every seedserve process appends its log lines to, besides stderr. Unset: `seedserve up` uses "
        "<data_dir>/logs/seedserve.log and hands it to every process it starts; other processes write to stderr only.",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_in_capitals(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("advertise")
    @classmethod
    def _advertise_is_an_address(cls, value: str) -> str:
        try:
            address = ipaddress.ip_address(value.strip("[]"))
        except ValueError:
            raise ValueError(f"advertise={value!r} is not an IP address; give the address of this machine that "
                             "worker hosts reach, e.g. 10.0.0.5") from None
        if address.is_unspecified:
            raise ValueError(f"advertise={value!r} names no single address; give the address of this machine that "
                             "worker hosts reach, e.g. 10.0.0.5")
        return str(address)

    @model_validator(mode="after")
    def _ports_are_distinct(self) -> Settings:
        ports = {
            "master_port": self.master_port,
            "manager_port": self.manager_port,
            "grpc_port": self.grpc_port,
            "dashboard_port": self.dashboard_port,
            "ray_port": self.ray_port,
        }
        if self.mongo_uri is None:
            ports["db_port"] = self.db_port
        seen: dict[int, str] = {}
        for name, port in ports.items():
            if port in seen:
                raise ValueError(f"{name} and {seen[port]} are both {port}; give each its own port")
            if self.internal_port_base <= port < self.internal_port_base + 1500:
                raise ValueError(
                    f"{name}={port} falls inside internal ports "
                    f"{self.internal_port_base}-{self.internal_port_base + 1499}; move one of them"
                )
            seen[port] = name
        return self

    @property
    def resolved_mongo_uri(self) -> str:
        """The MongoDB URI in use: the configured one or the embedded server's."""
        return self.mongo_uri or f"mongodb://127.0.0.1:{self.db_port}"

    @property
    def resolved_master_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return self.master_url or f"http://{host}:{self.master_port}"

    @property
    def sandbox_limits(self) -> SandboxLimits:
        """The limits of a sandboxed process of user code (see :mod:`seedserve.sandbox`)."""
        return SandboxLimits(memory_bytes=self.sandbox_memory_bytes, pids=self.sandbox_processes)

    def configure_logging(self, process: str) -> None:
        """seedserve's log lines in this process, as these settings say (see :mod:`seedserve.logs`)."""
        configure(self.log_format, self.log_level, self.log_file, process)

    @property
    def default_log_file(self) -> Path:
        """The log file `seedserve up` names when ``log_file`` is unset."""
        return self.data_dir.resolve() / "logs" / "seedserve.log"

    @property
    def admin_token_file(self) -> Path:
        return self.data_dir / "admin-token"
