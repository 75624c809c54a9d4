"""Network namespaces the tests create (``ip netns``, a veth pair, addresses
from 198.18.0.0/15) and always remove: a host of their own on this machine,
so that "outside" traffic never leaves it."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["Namespace", "kill_processes_in", "linked_pair", "listener_in", "namespace"]

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

    def argv(self, *command: str) -> list[str]:
        """``command`` as run inside this namespace's network, and nothing
        else of it: ``ip netns exec`` would also mount a sysfs of its own,
        without the machine's cgroups, which a host keeps."""
        return ["nsenter", f"--net=/run/netns/{self.name}", "--", *command]

    def pids(self) -> set[int]:
        """Every process whose network namespace is this one."""
        found = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True).stdout
        return {int(pid) for pid in found.split()}


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


def kill_processes_in(ns: Namespace) -> None:
    """SIGKILL every process in ``ns`` (what losing that host looks like)."""
    for pid in ns.pids():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def linked_pair(subnet: int) -> Iterator[tuple[Namespace, Namespace]]:
    """Two namespaces joined by one veth pair and nothing else, two hosts on a
    wire of their own: the first 198.18.<subnet>.1, the second .2 (each
    one's ``host_address`` is the other's address). Every process still in
    either is killed before they are removed."""
    tag = secrets.token_hex(3)
    names, ends = (f"ss-{tag}a", f"ss-{tag}b"), (f"ssa{tag}", f"ssb{tag}")
    addresses = (f"198.18.{subnet}.1", f"198.18.{subnet}.2")
    pair = (Namespace(names[0], addresses[1], addresses[0]), Namespace(names[1], addresses[0], addresses[1]))
    try:
        for name in names:
            _ip("netns", "add", name)
        _ip("link", "add", ends[0], "netns", names[0], "type", "veth", "peer", "name", ends[1], "netns", names[1])
        for name, end, address in zip(names, ends, addresses, strict=True):
            _ip("netns", "exec", name, "ip", "addr", "add", f"{address}/30", "dev", end)
            _ip("netns", "exec", name, "ip", "link", "set", end, "up")
            _ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
        yield pair
    finally:
        for ns in pair:
            kill_processes_in(ns)
        for ns in pair:
            # Deleting a namespace with a live process would leave it running, unreachable.
            deadline = time.monotonic() + 10
            while ns.pids() and time.monotonic() < deadline:
                time.sleep(0.1)
            subprocess.run(["ip", "netns", "del", ns.name], capture_output=True)


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
