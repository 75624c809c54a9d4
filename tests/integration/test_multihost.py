"""Two hosts on one machine: the head (`seedserve up --advertise`) in one
network namespace, a worker host in another, joined by one veth pair
(198.18.<n>.1 and .2) and nothing else, so neither reaches the machine's
network nor the other's loopback. Each has its own HOME, TMPDIR and Ray
temporary directory: the worker gets Ray's token only through the command
`seedserve up` printed, as a user pastes it. The test process lives outside
both and acts through `ip netns exec` (tests/host_probe.py).

The first test: a model pinned to the worker's type serves from a replica in
the worker's namespace; the database listens on the head's loopback only and
no replica holds a connection to it or a database URI or the admin token.
The second: load scales a model past one host (each host fits one replica)
onto both; losing the worker host under load leaves the head's replica
answering (503s with Retry-After meanwhile, never a 500); its replicas come
back when it rejoins; the registry keeps everything."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from benchmarks._system import tree_pids
from tests.conftest import VENV_BIN
from tests.helpers import MLP_MANIFEST, eventually, make_mlp, save_torchscript
from tests.netns import Namespace, kill_processes_in, linked_pair

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("ss") is None,
                       reason="network namespaces need root, `ip` and `ss`"),
]

REPO = Path(__file__).resolve().parents[2]
PROBE = str(REPO / "tests" / "host_probe.py")
HEAD_TYPE, WORKER_TYPE = "mh-head", "mh-edge"
#: Inside its own namespace each host has every port to itself: the defaults.
MASTER, MANAGER, DB, RAY, DASHBOARD = 8000, 8080, 27017, 6379, 8265
LOCAL = "127.0.0.1"


@dataclass
class Hosts:
    head: Namespace
    worker: Namespace
    root: Path
    head_env: dict[str, str]
    worker_env: dict[str, str]
    admin_token: str
    up_log: Path
    join_log: Path
    join_command: str = ""
    joins: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def probe(self, *args: str) -> Any:
        """A probe command in the head's namespace, as the head's user."""
        done = subprocess.run(self.head.argv(sys.executable, PROBE, *args), env=self.head_env, capture_output=True,
                              text=True, timeout=180)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout)

    def join(self) -> None:
        """The printed join command, pasted into the worker host's shell."""
        start = self.join_log.stat().st_size if self.join_log.exists() else 0
        self.joins.append(subprocess.Popen(
            self.worker.argv("bash", "-c", self.join_command), env=self.worker_env, cwd=self.worker_env["HOME"],
            stdout=self.join_log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True))
        eventually(lambda: f"worker {WORKER_TYPE!r} is up" in self.join_log.read_text()[start:] or _fail(
            f"the worker host has not joined:\n{self.join_log.read_text()[-3000:]}"), timeout_s=180, interval_s=1)

    def replicas(self, model: str) -> list[dict[str, Any]]:
        return self.probe("replicas", f"http://{LOCAL}:{DASHBOARD}", f"model-{model}")  # type: ignore[no-any-return]


def _fresh_environ(home: Path) -> dict[str, str]:
    """What a fresh login on a host with seedserve installed has: no
    SEEDSERVE_* or RAY_* settings, a HOME and TMPDIR of its own."""
    (home / "tmp").mkdir(parents=True)
    (home / "tmp").chmod(0o1777)  # as /tmp is: the sandbox's user stages its mounts under TMPDIR
    env = {"PATH": f"{VENV_BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "HOME": str(home), "TMPDIR": str(home / "tmp"), "LANG": os.environ.get("LANG", "C.UTF-8")}
    if "PYTHONPATH" in os.environ:  # the checkout under test, where it is not the installed one
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env


@pytest.fixture(scope="module")
def hosts() -> Iterator[Hosts]:
    # Short paths: Ray's Unix sockets live under its temporary directory.
    root = Path(tempfile.mkdtemp(prefix="ssmh", dir="/tmp"))
    root.chmod(0o755)
    with linked_pair(77) as (head, worker):
        hosts = Hosts(head, worker, root, _fresh_environ(root / "h"), _fresh_environ(root / "w"),
                      "adm_" + os.urandom(16).hex(), root / "up.log", root / "join.log")
        hosts.head_env.update({
            "SEEDSERVE_DATA_DIR": str(root / "h" / "data"),
            "SEEDSERVE_RAY_TEMP_DIR": str(root / "h" / "ray"),
            "SEEDSERVE_ADMIN_TOKEN": hosts.admin_token,
            "SEEDSERVE_WORKER_TYPE": HEAD_TYPE,
            # Each host offers one CPU: a replica of 0.9 CPU fits once on each.
            "SEEDSERVE_NUM_CPUS": "1",
            "SEEDSERVE_INTERNAL_PORT_BASE": "23000",
            "SEEDSERVE_RECONCILE_INTERVAL_S": "1.0",
            "SEEDSERVE_SANDBOX_MEMORY_BYTES": str(2**30),
        })
        up = subprocess.Popen(
            head.argv(str(VENV_BIN / "seedserve"), "up", "--host", LOCAL, "--advertise", head.address),
            env=hosts.head_env, cwd=root / "h", stdout=hosts.up_log.open("wb"), stderr=subprocess.STDOUT,
            start_new_session=True)
        try:
            deadline = time.monotonic() + 300
            while "seedserve is up" not in hosts.up_log.read_text():
                if up.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"seedserve up did not come up:\n{hosts.up_log.read_text()[-5000:]}")
                time.sleep(1)
            yield hosts
        finally:
            for process in [*hosts.joins, up]:
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGINT)
            for process in [*hosts.joins, up]:
                try:
                    process.wait(60)
                except subprocess.TimeoutExpired:
                    pass
            # linked_pair kills whatever is left in either namespace.
    shutil.rmtree(root, ignore_errors=True)


def test_a_model_pinned_to_the_worker_hosts_type_serves_from_it_with_no_database_access(
    hosts: Hosts, tmp_path: Path
) -> None:
    printed = [line.strip() for line in hosts.up_log.read_text().splitlines() if "seedserve worker join" in line]
    assert len(printed) == 1, hosts.up_log.read_text()
    assert printed[0].startswith("RAY_AUTH_TOKEN="), printed  # the token travels in the command, nowhere else
    assert f"--address {hosts.head.address}:{RAY}" in printed[0]
    # What a user types: the printed command, its worker type filled in, and
    # one CPU (so that each host fits one replica of the scaling model).
    hosts.join_command = printed[0].replace("--type TYPE", f"--type {WORKER_TYPE}") + " --num-cpus 1"
    assert not (Path(hosts.worker_env["HOME"]) / ".ray").exists()
    hosts.join()

    # The worker host advertises its type and its CPUs; each node has its namespace's address.
    # `ray start` returns before the head's state API lists the new node (CI saw the gap).
    def both_nodes() -> dict[str, dict[str, Any]]:
        nodes = {n["node_ip"]: n["resources"] for n in hosts.probe("nodes", f"http://{LOCAL}:{DASHBOARD}")}
        assert set(nodes) == {hosts.head.address, hosts.worker.address}, (nodes, hosts.join_log.read_text()[-3000:])
        return nodes

    nodes: dict[str, dict[str, Any]] = eventually(both_nodes, timeout_s=60, interval_s=1)
    assert nodes[hosts.worker.address].get(f"worker:{WORKER_TYPE}") and nodes[hosts.worker.address]["CPU"] == 1
    assert nodes[hosts.head.address].get(f"worker:{HEAD_TYPE}") and f"worker:{WORKER_TYPE}" not in nodes[
        hosts.head.address]
    # Each host's Ray kept its session under its own temporary directory.
    assert (hosts.root / "h" / "ray" / "session_latest").exists()
    assert (hosts.root / "w" / "tmp" / "ray" / "session_latest").exists()

    model = make_mlp(seed=16)
    artifact = save_torchscript(model, hosts.root / "edge.pt")
    key = hosts.probe("register", f"http://{LOCAL}:{MANAGER}", hosts.admin_token, str(artifact), json.dumps(
        {**MLP_MANIFEST, "name": "edge", "scaling": {"worker_type": WORKER_TYPE, "min_replicas": 1,
                                                     "max_replicas": 1}}))
    expected = model(torch.full((1, 16), 0.5)).tolist()

    def answered() -> None:
        answer = hosts.probe("predict", f"http://{LOCAL}:{MASTER}", key, "edge")
        assert answer["status"] == 200, answer
        assert torch.allclose(torch.tensor(answer["body"]["y"]), torch.tensor(expected), atol=1e-5), answer

    eventually(answered, timeout_s=180, interval_s=1)
    [replica] = hosts.replicas("edge")
    assert replica["node_ip"] == hosts.worker.address
    identified = subprocess.run(["ip", "netns", "identify", str(replica["pid"])], capture_output=True, text=True)
    assert identified.stdout.strip() == hosts.worker.name, identified

    _assert_database_on_head_loopback_only(hosts)
    _assert_no_replica_reaches_the_database(hosts, [replica])


def test_load_scales_a_model_onto_both_hosts_and_survives_losing_the_worker_host(hosts: Hosts) -> None:
    if not hosts.joins:
        pytest.skip("the worker host did not join in the first test")
    model = make_mlp(seed=17)
    artifact = save_torchscript(model, hosts.root / "wide.pt")
    key = hosts.probe("register", f"http://{LOCAL}:{MANAGER}", hosts.admin_token, str(artifact), json.dumps(
        {**MLP_MANIFEST, "name": "wide", "scaling": {
            # 0.9 CPU: one replica per host, so a second replica means a second host.
            "num_cpus": 0.9, "min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 1,
            "upscale_delay_s": 0, "downscale_delay_s": 3600, "metrics_window_s": 2}}))
    registry = hosts.probe("models", f"http://{LOCAL}:{MANAGER}", hosts.admin_token)
    assert set(registry) == {"edge", "wide"}
    eventually(lambda: hosts.probe("predict", f"http://{LOCAL}:{MASTER}", key, "wide")["status"] == 200 or _fail(
        "wide does not answer"), timeout_s=180, interval_s=1)

    answers = hosts.root / "answers.txt"
    load = subprocess.Popen(hosts.head.argv(sys.executable, PROBE, "load", f"http://{LOCAL}:{MASTER}", key, "wide",
                                            str(answers), "6"), env=hosts.head_env)
    try:
        def on_both_hosts() -> None:
            replicas = hosts.replicas("wide")
            assert sorted(r["node_ip"] for r in replicas) == sorted([hosts.head.address, hosts.worker.address]), \
                replicas

        eventually(on_both_hosts, timeout_s=180, interval_s=1)
        _assert_no_replica_reaches_the_database(hosts, hosts.replicas("wide"))

        # The worker host is lost: every process in its namespace, SIGKILLed at once.
        lost_at = time.monotonic()
        kill_processes_in(hosts.worker)

        def head_alone_answers() -> None:
            assert [r["node_ip"] for r in hosts.replicas("wide")] == [hosts.head.address]
            assert _answers(answers, after=time.monotonic() - 2)[-20:] == [(200, False)] * 20

        eventually(head_alone_answers, timeout_s=180, interval_s=1)
        meanwhile = _answers(answers, after=lost_at)

        hosts.join()
        rejoined_at = time.monotonic()
        eventually(on_both_hosts, timeout_s=180, interval_s=1)
        eventually(lambda: [r["node_ip"] for r in hosts.replicas("edge")] == [hosts.worker.address] or _fail(
            "edge's replica is not back on the worker host"), timeout_s=180, interval_s=1)
    finally:
        load.send_signal(signal.SIGTERM)
        load.wait(30)
    everything = _answers(answers, after=0)
    print(f"{len(everything)} answers under load; after losing the worker host: "
          f"{sum(s == 200 for s, _ in meanwhile)} answered, {sum(s != 200 for s, _ in meanwhile)} not; "
          f"after it rejoined: {len(_answers(answers, after=rejoined_at))}")
    assert {s for s, _ in everything} <= {200, 503}, sorted({s for s, _ in everything})
    assert all(retry for s, retry in everything if s == 503), "a 503 without Retry-After"
    assert sum(s == 200 for s, _ in meanwhile) >= 20
    # Nothing in the registry was lost, and its keys still work.
    assert hosts.probe("models", f"http://{LOCAL}:{MANAGER}", hosts.admin_token) == registry
    assert hosts.probe("predict", f"http://{LOCAL}:{MASTER}", key, "wide")["status"] == 200


def _answers(path: Path, *, after: float) -> list[tuple[int, bool]]:
    """(status, had Retry-After) of each answer the load got after ``after`` (monotonic)."""
    rows = [line.split() for line in path.read_text().splitlines() if line.count(" ") == 2]
    return [(int(status), retry == "1") for t, status, retry in rows if float(t) > after]


def _listeners(ns: Namespace, port: int) -> list[str]:
    """Local addresses listening on TCP ``port`` in ``ns``."""
    table = subprocess.run(ns.argv("ss", "-Htln", f"sport = :{port}"), capture_output=True, text=True,
                           check=True).stdout
    return [line.split()[3].rsplit(":", 1)[0] for line in table.splitlines()]


def _reaches(source: Namespace, host: str, port: int) -> bool:
    done = subprocess.run(source.argv(sys.executable, "-c", (
        "import socket, sys\n"
        "try:\n    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()\n"
        "except OSError:\n    sys.exit(1)"), host, str(port)), capture_output=True)
    return done.returncode == 0


def _assert_database_on_head_loopback_only(hosts: Hosts) -> None:
    assert _listeners(hosts.head, DB) == [LOCAL]
    assert _listeners(hosts.worker, DB) == []
    # From the worker host: Ray's port answers, nothing else of the head's does.
    assert _reaches(hosts.worker, hosts.head.address, RAY)
    for port in (DB, DASHBOARD, MASTER, MANAGER):
        assert not _reaches(hosts.worker, hosts.head.address, port), port
    # The public ports follow --host (loopback here), not --advertise.
    for port in (MASTER, MANAGER, DASHBOARD):
        assert set(_listeners(hosts.head, port)) <= {LOCAL, f"[::ffff:{LOCAL}]"}, (port, _listeners(hosts.head, port))


def _assert_no_replica_reaches_the_database(hosts: Hosts, replicas: list[dict[str, Any]]) -> None:
    """No process of any of ``replicas`` (and their children) holds a TCP
    connection to the database port, nor a database URI or the admin token
    in its environment or arguments."""
    pids = {pid for r in replicas for pid in tree_pids(r["pid"])}
    assert pids
    for ns in (hosts.head, hosts.worker):
        table = subprocess.run(ns.argv("ss", "-Htnp"), capture_output=True, text=True, check=True).stdout
        to_db = [line for line in table.splitlines() if line.split()[4].endswith(f":{DB}")]
        assert not [line for line in to_db if any(f"pid={pid}," in line for pid in pids)], to_db
    for pid in pids:
        seen = Path(f"/proc/{pid}/environ").read_bytes() + Path(f"/proc/{pid}/cmdline").read_bytes()
        for secret in (b"mongodb://", f":{DB}".encode(), hosts.admin_token.encode()):
            assert secret not in seen, (pid, secret)


def _fail(message: str) -> bool:
    raise AssertionError(message)
