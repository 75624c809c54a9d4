"""Register -> serve -> predict on the real stack: embedded database server,
Ray, Serve behind HAProxy, and the manager, all over real HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pymongo
import pytest
import torch

from seedserve import api
from seedserve.client import Client, ManagerClient
from seedserve.errors import InvalidArtifact, InvalidManifest, NotFound, Unauthenticated
from tests.conftest import System
from tests.helpers import MLP_MANIFEST, eventually, make_mlp, save_torchscript

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _delete_registered_models(system: System) -> Iterator[None]:
    """Each test removes the models it registered: replicas reserve CPU, and
    the 2-CPU node must keep room for the next test's models."""
    with ManagerClient(system.manager_url, system.admin_token) as manager:
        before = {m.name for m in manager.list_models()}
        yield
        for model in manager.list_models():
            if model.name not in before:
                manager.delete_model(model.name)


def _register(system: System, tmp_path: Path, name: str, seed: int = 0) -> tuple[str, torch.nn.Module]:
    model = make_mlp(seed)
    artifact = save_torchscript(model, tmp_path / f"{name}.pt")
    with ManagerClient(system.manager_url, system.admin_token) as manager:
        key = manager.register(artifact, {**MLP_MANIFEST, "name": name})
    return key, model


def _served(system: System, name: str, key: str) -> dict[str, object]:
    with Client(system.master_url, key) as client:
        return eventually(lambda: client.predict(name, x=np.zeros((1, 16), np.float32)), timeout_s=90)


def test_health_endpoints_answer_200_with_component_states(system: System, http: httpx.Client) -> None:
    master = http.get(system.master_url + "/healthz")
    manager = http.get(system.manager_url + "/healthz")
    assert master.status_code == 200 and master.json()["components"]["database"] == "ok"
    assert manager.status_code == 200 and manager.json()["components"]["database"] == "ok"
    assert http.get(system.master_url + "/v2/health/live").status_code == 200
    assert http.get(system.master_url + "/v2/health/ready").status_code == 200


def test_registered_mlp_predicts_what_the_in_process_model_computes(system: System, tmp_path: Path) -> None:
    key, model = _register(system, tmp_path, "e2e-mlp")
    _served(system, "e2e-mlp", key)
    x = torch.randn(5, 16)
    with Client(system.master_url, key) as client:
        outputs = client.predict("e2e-mlp", x=x)
    np.testing.assert_allclose(np.array(outputs["y"]), model(x).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_missing_and_wrong_keys_get_401_with_a_json_error(system: System, tmp_path: Path, http: httpx.Client) -> None:
    key, _ = _register(system, tmp_path, "auth-mlp")
    _served(system, "auth-mlp", key)
    url = system.master_url + "/models/auth-mlp/predict"
    body = {"x": [[0.0] * 16]}
    missing = http.post(url, json=body)
    wrong = http.post(url, json=body, headers={"Authorization": "Bearer sk_" + "A" * 43})
    for response in (missing, wrong):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthenticated"
    with Client(system.master_url, key[:-1] + ("A" if key[-1] != "A" else "B")) as client:
        with pytest.raises(Unauthenticated):
            client.predict("auth-mlp", x=[[0.0] * 16])


def test_a_key_keeps_working_after_the_replicas_refresh_their_key_cache(system: System, tmp_path: Path) -> None:
    key, _ = _register(system, tmp_path, "refreshed")
    _served(system, "refreshed", key)
    time.sleep(3 * 2.0 + 1)  # several refresh intervals of the model server's key cache
    with Client(system.master_url, key) as client:
        assert len(client.predict("refreshed", x=[[0.0] * 16])["y"][0]) == 4


def test_a_key_works_only_for_its_own_model(system: System, tmp_path: Path, http: httpx.Client) -> None:
    key_a, _ = _register(system, tmp_path, "tenant-a")
    key_b, _ = _register(system, tmp_path, "tenant-b")
    _served(system, "tenant-a", key_a)
    _served(system, "tenant-b", key_b)
    response = http.post(
        system.master_url + "/models/tenant-b/predict", json={"x": [[0.0] * 16]},
        headers={"Authorization": f"Bearer {key_a}"},
    )
    assert response.status_code == 401


def test_bad_queries_get_4xx_naming_the_input(system: System, tmp_path: Path, http: httpx.Client) -> None:
    key, _ = _register(system, tmp_path, "strict-mlp")
    _served(system, "strict-mlp", key)
    url = system.master_url + "/models/strict-mlp/predict"
    auth = {"Authorization": f"Bearer {key}"}
    cases = {
        "wrong width": ({"x": [[0.0] * 15]}, 400, "x"),
        "unknown input": ({"x": [[0.0] * 16], "z": 1}, 422, "z"),
        "missing input": ({}, 422, "x"),
        "strings": ({"x": [["a"] * 16]}, 400, "x"),
    }
    for case, (body, status, name) in cases.items():
        response = http.post(url, json=body, headers=auth)
        assert response.status_code == status, case
        assert response.json()["error"]["input"] == name, case
    garbage = http.post(url, content=b"{not json", headers=auth)
    assert garbage.status_code == 400 and garbage.json()["error"]["code"] == "invalid_input"
    huge = http.post(url, content=b"[" + b"0," * (9 * 2**20) + b"0]", headers=auth)
    assert huge.status_code == 413


def test_bad_manifest_gets_422_naming_the_field_and_stores_nothing(system: System, tmp_path: Path) -> None:
    artifact = save_torchscript(make_mlp(), tmp_path / "m.pt")
    bad = {**MLP_MANIFEST, "name": "bad-shape", "inputs": [{"name": "x", "shape": [0, 16]}]}
    with ManagerClient(system.manager_url, system.admin_token) as manager:
        with pytest.raises(InvalidManifest) as caught:
            manager.register(artifact, bad)
        assert caught.value.input == "inputs.0.shape"
        with pytest.raises(NotFound):
            manager.get_model("bad-shape")


def test_an_artifact_that_is_not_torchscript_gets_422_and_leaves_nothing(system: System, tmp_path: Path) -> None:
    state_dict = tmp_path / "weights.pt"
    torch.save(make_mlp().state_dict(), state_dict)
    mongo: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(system.mongo_uri)
    files_before = len(list(mongo.seedserve["artifacts.files"].find()))
    with ManagerClient(system.manager_url, system.admin_token) as manager:
        with pytest.raises(InvalidArtifact) as caught:
            manager.register(state_dict, {**MLP_MANIFEST, "name": "not-script"})
        assert "TorchScript" in caught.value.message
    assert mongo.seedserve.models.find_one({"_id": "not-script"}) is None
    assert len(list(mongo.seedserve["artifacts.files"].find())) == files_before
    mongo.close()


def test_a_model_whose_outputs_do_not_match_the_manifest_is_refused(system: System, tmp_path: Path) -> None:
    artifact = save_torchscript(make_mlp(), tmp_path / "m.pt")
    two_outputs = {**MLP_MANIFEST, "name": "two-outputs", "outputs": [{"name": "a"}, {"name": "b"}]}
    with ManagerClient(system.manager_url, system.admin_token) as manager:
        with pytest.raises(InvalidArtifact, match="returned 1 output"):
            manager.register(artifact, two_outputs)


def test_a_second_registration_is_version_2_and_a_pin_moves_the_endpoint_back(
    system: System, tmp_path: Path, http: httpx.Client
) -> None:
    key, first = _register(system, tmp_path, "versioned")
    no_new_key, second = _register(system, tmp_path, "versioned", seed=1)
    assert no_new_key is None  # a new version keeps the model's keys
    x = torch.randn(3, 16)
    expected = {1: first(x).detach().numpy(), 2: second(x).detach().numpy()}

    def answers(model_version: int, route: int | None = None) -> None:
        """The endpoint (or ``route``'s versioned one) computes what ``model_version`` does."""
        with Client(system.master_url, key, timeout=60) as client:
            np.testing.assert_allclose(client.predict("versioned", x=x, version=route)["y"], expected[model_version],
                                       rtol=1e-5, atol=1e-6)

    eventually(lambda: answers(2), timeout_s=90)  # the endpoint follows the latest version
    eventually(lambda: answers(1, route=1), timeout_s=90)  # the old version, from zero replicas
    answers(2, route=2)  # the default version's own route
    with ManagerClient(system.manager_url, system.admin_token) as manager:
        assert [v.version for v in manager.versions("versioned")] == [1, 2]
        assert manager.pin("versioned", 1).version == 1
        eventually(lambda: answers(1), timeout_s=90)  # rolled back
        eventually(lambda: answers(2, route=2), timeout_s=90)
        with Client(system.master_url, key, timeout=60) as client:
            oip = eventually(lambda: client.infer("versioned", version=2, x=x.numpy()), timeout_s=60)
        np.testing.assert_allclose(oip["y"], expected[2], rtol=1e-5, atol=1e-6)
        with pytest.raises(NotFound, match="no version 7"):
            manager.pin("versioned", 7)
        assert manager.get_model("versioned").version == 1  # a refused pin changes nothing
    missing = http.post(system.master_url + "/models/versioned/versions/7/predict", json={"x": [[0.0] * 16]},
                        headers={"Authorization": f"Bearer {key}"})
    assert missing.status_code == 404 and missing.json()["error"]["input"] == "version"


def test_write_endpoints_need_the_admin_token(system: System, tmp_path: Path, http: httpx.Client) -> None:
    artifact = save_torchscript(make_mlp(), tmp_path / "m.pt")
    files = {"artifact": ("m.pt", artifact.read_bytes())}
    data = {"manifest": json.dumps({**MLP_MANIFEST, "name": "sneaky"})}
    assert http.post(system.manager_url + "/api/models", files=files, data=data).status_code == 401
    wrong = {"Authorization": "Bearer adm_wrong"}
    assert http.post(system.manager_url + "/api/models", files=files, data=data, headers=wrong).status_code == 401
    assert http.delete(system.manager_url + "/api/models/sneaky", headers=wrong).status_code == 401
    assert http.get(system.manager_url + "/api/models", headers=wrong).status_code == 401


def test_deleting_a_model_stops_serving_it(system: System, tmp_path: Path, http: httpx.Client) -> None:
    key, _ = _register(system, tmp_path, "short-lived")
    _served(system, "short-lived", key)
    with ManagerClient(system.manager_url, system.admin_token) as manager:
        manager.delete_model("short-lived")
        assert "short-lived" not in {m.name for m in manager.list_models()}

    def gone() -> None:
        response = http.post(system.master_url + "/models/short-lived/predict", json={"x": [[0.0] * 16]},
                             headers={"Authorization": f"Bearer {key}"})
        # A deleted model is as absent as one never registered: its key is refused.
        assert response.status_code == 401, response.text
        assert "no model named 'short-lived' accepts this key" in response.json()["error"]["message"]

    eventually(gone, timeout_s=60)


def test_a_register_and_delete_cycle_costs_only_a_few_config_submissions(
    system: System, tmp_path: Path, http: httpx.Client
) -> None:
    def deploys() -> int:
        return int(http.get(system.master_url + "/healthz").json()["components"]["reconciler"]["deploys"])

    before = deploys()
    key, _ = _register(system, tmp_path, "cycle")
    _served(system, "cycle", key)
    with ManagerClient(system.manager_url, system.admin_token) as manager:
        manager.delete_model("cycle")

    def gone() -> None:
        applications = http.get(system.master_url + "/cluster", headers=system.operator).json()["applications"]
        assert "model-cycle" not in applications, applications

    eventually(gone, timeout_s=60)
    time.sleep(3)  # several reconcile passes with nothing to do
    # One submission to add the model, one to remove it; a little slack for a
    # pass that raced a registration. Resubmitting on every pass would be far more.
    assert deploys() - before <= 4


HANDLER = """
import torch

def load(weights):
    model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))
    model.load_state_dict(weights)
    return model

def preprocess(inputs):
    return torch.from_numpy(inputs["x"]).flip(1)

def predict(model, x):
    return model(x)
"""


def test_handler_packages_and_torch_export_programs_serve_what_they_compute(system: System, tmp_path: Path) -> None:
    from seedserve.client.handler import package_handler

    network = make_mlp(seed=9)
    script = tmp_path / "handler.py"
    script.write_text(HANDLER)
    handler = package_handler(script, tmp_path / "flip.zip", weights=network)
    program = torch.export.export(network, (torch.randn(2, 16),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    exported = tmp_path / "exported.pt2"
    torch.export.save(program, exported)
    x = torch.randn(4, 16)
    expected = {"flip-handler": network(x.flip(1)), "exported": network(x)}
    with ManagerClient(system.manager_url, system.admin_token) as manager:
        keys = {name: manager.register(artifact, {**MLP_MANIFEST, "name": name})  # format from the suffix
                for name, artifact in (("flip-handler", handler), ("exported", exported))}
        assert [getattr(manager.get_model(name).artifact, "format", None) for name in ("flip-handler", "exported")] \
            == ["handler", "export"]
    for name, key in keys.items():
        with Client(system.master_url, key, timeout=60) as client:
            outputs = eventually(lambda name=name: client.predict(name, x=x), timeout_s=90)
        np.testing.assert_allclose(outputs["y"], expected[name].detach().numpy(), rtol=1e-5, atol=1e-6)


def test_latency_measured_on_live_traffic_shows_beside_the_prediction(system: System, tmp_path: Path) -> None:
    key, _ = _register(system, tmp_path, "measured-mlp")
    _served(system, "measured-mlp", key)
    with Client(system.master_url, key) as client:
        for _ in range(20):
            client.predict("measured-mlp", x=np.zeros((2, 16), np.float32))

    def reported() -> api.ModelDetail:
        with ManagerClient(system.manager_url, system.admin_token) as manager:
            shown = manager.get_model("measured-mlp")
        assert "cpu-local" in shown.measured, shown.measured
        return shown

    shown = eventually(reported, timeout_s=60)
    measured = shown.measured["cpu-local"]
    assert measured["calls"] >= 20 and 0 < measured["p50_ms"] <= measured["p99_ms"]
    assert measured["mean_items"] == pytest.approx(2.0, abs=0.1)  # 20 queries of 2 rows, one of 1 (warm-up not counted)
    beside = next(p for p in shown.predictions if p["worker_type"] == "cpu-local" and p["batch_size"] == 1)
    assert beside["measured_p50_ms"] == measured["p50_ms"] and beside["latency_ms"] > 0
