"""Where Ray's and Serve's internal listeners go on a node.

Ray and Serve default many listeners to fixed ports (HAProxy stats 8404 and
metrics 9101, the fallback proxy 8500, the dashboard agent 52365, replica
ports from 30000...). Two seedserve instances on one machine (a running system
and the test suite, say) would collide, so every instance lays them out from
one base port instead.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

__all__ = ["PortPlan", "port_is_free", "busy_ports"]

SPAN = 1500


@dataclass(frozen=True)
class PortPlan:
    """Internal ports of one node, all inside ``[base, base + SPAN)``."""

    base: int

    def ray_start_args(self) -> list[str]:
        b = self.base
        return [
            f"--node-manager-port={b}",
            f"--object-manager-port={b + 1}",
            f"--dashboard-agent-listen-port={b + 2}",
            f"--dashboard-agent-grpc-port={b + 3}",
            f"--metrics-export-port={b + 4}",
            f"--runtime-env-agent-port={b + 5}",
            f"--ray-client-server-port={b + 6}",
            f"--min-worker-port={b + 1000}",
            f"--max-worker-port={b + SPAN - 1}",
        ]

    def serve_env(self) -> dict[str, str]:
        """Environment for the Ray node so Serve's listeners follow the plan."""
        b = self.base
        return {
            "RAY_SERVE_HAPROXY_STATS_PORT": str(b + 10),
            "RAY_SERVE_HAPROXY_METRICS_PORT": str(b + 11),
            "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(b + 12),
            "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": str(b + 13),
            "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(b + 100),
            "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(b + 500),
            "RAY_SERVE_DIRECT_INGRESS_MIN_GRPC_PORT": str(b + 500),
            "RAY_SERVE_DIRECT_INGRESS_MAX_GRPC_PORT": str(b + 900),
        }

    def grpc_port(self) -> int:
        return self.base + 14


def port_is_free(host: str, port: int) -> bool:
    """Whether ``port`` can be bound on ``host`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def busy_ports(host: str, ports: dict[str, int]) -> dict[str, int]:
    """The named ports that are already taken on ``host``."""
    return {name: port for name, port in ports.items() if not port_is_free(host, port)}
