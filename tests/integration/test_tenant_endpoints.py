"""Tenant isolation on the real stack: model replicas hold no database
address, token or database connection; the master's public port tells an
anonymous caller nothing about which models exist (operational endpoints
need a token; an unknown model and a wrong key get the same answer)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from seedserve.client import Client, ManagerClient
from tests.conftest import System
from tests.helpers import MLP_MANIFEST, error_fields, eventually, make_mlp, save_torchscript

pytestmark = pytest.mark.integration

QUERY = {"x": [[0.0] * 16]}
INFER = {"inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32", "data": [0.0] * 16}]}
#: A name no test registers.
GHOST = "tenant-ghost"


@dataclass
class Tenant:
    name: str
    key: str


@pytest.fixture(scope="module")
def tenants(system: System, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Tenant, Tenant]]:
    """Two registered models, both answering; deleted after the module."""
    artifact = save_torchscript(make_mlp(seed=11), tmp_path_factory.mktemp("tenants") / "m.pt")
    made: list[Tenant] = []
    with ManagerClient(system.manager_url, system.admin_token) as manager:
        try:
            for name in ("tenant-one", "tenant-two"):
                made.append(Tenant(name, manager.register(artifact, {**MLP_MANIFEST, "name": name})))
            for tenant in made:
                with Client(system.master_url, tenant.key) as client:
                    eventually(lambda tenant=tenant: client.predict(tenant.name, x=np.zeros((1, 16), np.float32)),
                               timeout_s=120)
            yield made[0], made[1]
        finally:
            for tenant in made:
                manager.delete_model(tenant.name)


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def _model_routes(name: str) -> list[tuple[str, str, object]]:
    """Every per-model route: method, path, JSON body."""
    return [
        ("POST", f"/models/{name}/predict", QUERY),
        ("GET", f"/v2/models/{name}", None),
        ("GET", f"/v2/models/{name}/ready", None),
        ("POST", f"/v2/models/{name}/infer", INFER),
    ]


def _ask(
    http: httpx.Client, system: System, method: str, path: str, body: object, headers: dict[str, str]
) -> httpx.Response:
    return http.request(method, system.master_url + path, json=body, headers=headers)


# ---- model replicas: nothing of the database ------------------------------------------------------


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().as_posix()
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    return inodes


def _remote_ports(pid: int) -> set[int]:
    """Remote TCP ports of ``pid``'s connections (its sockets matched against /proc/net/tcp{,6})."""
    inodes = _socket_inodes(pid)
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            remote, inode = fields[2], fields[9]
            if inode in inodes:
                ports.add(int(remote.rsplit(":", 1)[1], 16))
    return ports


def test_a_model_replica_holds_no_database_address_token_or_connection(
    system: System, tenants: tuple[Tenant, Tenant]
) -> None:
    replicas = system.replicas(f"model-{tenants[0].name}")
    assert replicas, "the model runs no replica"
    db_port = int(system.env["SEEDSERVE_DB_PORT"])
    secrets = [b"mongodb://", system.admin_token.encode(), system.metrics_token.encode()]
    for replica in replicas:
        pid = int(replica["pid"])
        for what in ("environ", "cmdline"):
            content = Path(f"/proc/{pid}/{what}").read_bytes()
            assert [s for s in secrets if s in content] == [], f"replica {pid}'s {what} holds a secret"
        assert db_port not in _remote_ports(pid), f"replica {pid} is connected to the database"
    # The check finds a database connection where there is one: the master's.
    masters = system.replicas("master", "Master")
    assert any(db_port in _remote_ports(int(m["pid"])) for m in masters)


def test_a_revoked_key_stops_working_on_the_replicas_within_seconds(
    system: System, tenants: tuple[Tenant, Tenant], http: httpx.Client
) -> None:
    tenant = tenants[1]
    url = f"{system.master_url}/models/{tenant.name}/predict"
    with ManagerClient(system.manager_url, system.admin_token) as manager:
        extra = manager.create_key(tenant.name, "short-lived")
        eventually(lambda: http.post(url, json=QUERY, headers=_bearer(extra.key)).raise_for_status(), timeout_s=30)
        manager.revoke_key(tenant.name, extra.id)

    def refused() -> None:
        assert http.post(url, json=QUERY, headers=_bearer(extra.key)).status_code == 401

    # Replicas refresh their keys from the master every 2 s.
    eventually(refused, timeout_s=15, interval_s=0.5)
    assert http.post(url, json=QUERY, headers=_bearer(tenant.key)).status_code == 200


# ---- operational endpoints: a token, or nothing ---------------------------------------------------


@pytest.mark.parametrize("path", ["/cluster", "/metrics", "/-/routes"])
def test_operational_endpoints_need_the_admin_or_the_metrics_token(
    system: System, tenants: tuple[Tenant, Tenant], http: httpx.Client, path: str
) -> None:
    url = system.master_url + path
    for headers in ({}, _bearer(tenants[0].key), _bearer("adm_wrong")):
        refused = http.get(url, headers=headers)
        assert refused.status_code == 401, (headers, refused.text)
        assert refused.json()["error"]["code"] == "unauthenticated"
        assert tenants[0].name not in refused.text and tenants[1].name not in refused.text
    for token in (system.admin_token, system.metrics_token):
        assert http.get(url, headers=_bearer(token)).status_code == 200


def test_the_routes_table_lists_the_applications_only_for_a_token(
    system: System, tenants: tuple[Tenant, Tenant], http: httpx.Client
) -> None:
    anonymous = http.get(system.master_url + "/-/routes")
    assert "model-" not in anonymous.text and tenants[0].name not in anonymous.text
    routes = http.get(system.master_url + "/-/routes", headers=_bearer(system.metrics_token)).json()
    assert routes[f"/models/{tenants[0].name}"] == f"model-{tenants[0].name}" and routes["/"] == "master"
    cluster = http.get(system.master_url + "/cluster", headers=system.operator).json()
    assert cluster["applications"][f"model-{tenants[0].name}"] == "RUNNING"


@pytest.mark.parametrize("path", ["/healthz", "/-/healthz"])
def test_health_endpoints_answer_anyone_and_name_no_model(
    system: System, tenants: tuple[Tenant, Tenant], http: httpx.Client, path: str
) -> None:
    response = http.get(system.master_url + path)
    assert response.status_code == 200
    assert "model-" not in response.text
    assert all(tenant.name not in response.text for tenant in tenants)


# ---- per-model routes: the key, and one answer for "no such model" and "wrong key" ----------------


def test_every_model_route_needs_that_models_own_key(
    system: System, tenants: tuple[Tenant, Tenant], http: httpx.Client
) -> None:
    one, two = tenants
    for method, path, body in _model_routes(one.name):
        for headers in ({}, _bearer(two.key)):
            refused = _ask(http, system, method, path, body, headers)
            assert refused.status_code == 401, (method, path, headers, refused.text)
            assert error_fields(refused)["code"] == "unauthenticated"
        answered = _ask(http, system, method, path, body, _bearer(one.key))
        assert answered.status_code == 200, (method, path, answered.text)
    assert _ask(http, system, "GET", f"/v2/models/{one.name}", None, _bearer(one.key)).json()["name"] == one.name


def test_an_unknown_model_and_a_wrong_key_get_the_same_status_and_body(
    system: System, tenants: tuple[Tenant, Tenant], http: httpx.Client
) -> None:
    one, two = tenants
    for (method, path, body), (_, ghost_path, _) in zip(_model_routes(one.name), _model_routes(GHOST), strict=True):
        wrong = _ask(http, system, method, path, body, _bearer(two.key))  # answered by tenant-one's replica
        unknown = _ask(http, system, method, ghost_path, body, _bearer(two.key))  # answered by the master
        assert wrong.status_code == unknown.status_code == 401
        # The bytes differ only by the name the caller sent.
        assert unknown.content.replace(GHOST.encode(), one.name.encode()) == wrong.content, (path, wrong.text)
        assert error_fields(wrong)["message"] == (
            f"no model named {one.name!r} accepts this key; check the model name and the key")


def test_a_version_not_served_is_named_only_to_a_caller_with_the_models_key(
    system: System, tenants: tuple[Tenant, Tenant], http: httpx.Client
) -> None:
    one, two = tenants
    for method, path, body in [("POST", f"/models/{one.name}/versions/7/predict", QUERY),
                               ("GET", f"/v2/models/{one.name}/versions/7", None)]:
        missing = _ask(http, system, method, path, body, _bearer(one.key))
        assert missing.status_code == 404 and error_fields(missing)["input"] == "version"
        wrong = _ask(http, system, method, path, body, _bearer(two.key))
        unknown = _ask(http, system, method, path.replace(one.name, GHOST), body, _bearer(two.key))
        assert wrong.status_code == unknown.status_code == 401
        assert unknown.content.replace(GHOST.encode(), one.name.encode()) == wrong.content


def test_a_deleted_model_answers_its_old_key_byte_for_byte_as_a_wrong_key_did(
    system: System, tmp_path: Path, http: httpx.Client
) -> None:
    name = "tenant-gone"
    artifact = save_torchscript(make_mlp(seed=12), tmp_path / "m.pt")
    with ManagerClient(system.manager_url, system.admin_token) as manager:
        key = manager.register(artifact, {**MLP_MANIFEST, "name": name})
        with Client(system.master_url, key) as client:
            eventually(lambda: client.predict(name, x=np.zeros((1, 16), np.float32)), timeout_s=120)
        wrong = [(r.status_code, r.content) for r in
                 (_ask(http, system, m, p, b, _bearer("sk_" + "A" * 43)) for m, p, b in _model_routes(name))]
        manager.delete_model(name)

    def gone() -> None:
        cluster = http.get(system.master_url + "/cluster", headers=system.operator).json()
        assert f"model-{name}" not in cluster["applications"]

    eventually(gone, timeout_s=60)

    def same_as_a_wrong_key() -> None:  # once the ingress no longer routes to the removed application
        for secret in (key, "sk_" + "A" * 43):
            after = [(r.status_code, r.content) for r in
                     (_ask(http, system, m, p, b, _bearer(secret)) for m, p, b in _model_routes(name))]
            assert after == wrong

    eventually(same_as_a_wrong_key, timeout_s=30)
