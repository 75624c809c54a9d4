"""Network namespaces the tests create (``ip netns``, a veth pair, addresses
from 198.18.0.0/15) and always remove: a host of their own on this machine,
so that "outside" traffic never leaves it."""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["Namespace", "listener_in", "namespace"]

#: A listener that accepts connections until killed.
_LISTENER = """
import socket, sys
server = socket.create_server((sys.argv[1], int(sys.argv[2])))
print("listening", flush=True)
while True:
    connection, _ = server.accept()
    connection.close()
"""


@dataclass(frozen=True)
class Namespace:
    name: str
    host_address: str
    address: str

    def run(self, *command: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(["ip", "netns", "exec", self.name, *command], stdout=subprocess.PIPE)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@contextlib.contextmanager
def namespace(subnet: int) -> Iterator[Namespace]:
    """A namespace reached from here over a veth pair: this side 198.18.<subnet>.1,
    the namespace 198.18.<subnet>.2 (a /30 of its own)."""
    tag = secrets.token_hex(3)
    name, host_end, ns_end = f"ss-{tag}", f"ssh{tag}", f"ssn{tag}"
    host, inside = f"198.18.{subnet}.1", f"198.18.{subnet}.2"
    try:
        _ip("netns", "add", name)
        _ip("link", "add", host_end, "type", "veth", "peer", "name", ns_end)
        _ip("link", "set", ns_end, "netns", name)
        _ip("addr", "add", f"{host}/30", "dev", host_end)
        _ip("link", "set", host_end, "up")
        _ip("netns", "exec", name, "ip", "addr", "add", f"{inside}/30", "dev", ns_end)
        _ip("netns", "exec", name, "ip", "link", "set", ns_end, "up")
        _ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
        yield Namespace(name, host, inside)
    finally:
        subprocess.run(["ip", "link", "del", host_end], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


@contextlib.contextmanager
def listener_in(ns: Namespace, port: int) -> Iterator[None]:
    """A TCP listener on the namespace's address, until the block ends."""
    process = ns.run(sys.executable, "-c", _LISTENER, ns.address, str(port))
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == b"listening"
        time.sleep(0.05)
        yield
    finally:
        process.kill()
        process.wait()
