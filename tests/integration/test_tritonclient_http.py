"""A third-party Open Inference Protocol client, ``tritonclient.http``, against
the real stack (the session's ``seedserve up``): health, server and model
metadata, the repository index, statistics, JSON and binary inference, and
seedserve's errors raised as tritonclient's own exception with seedserve's
message."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from seedserve.client import Client, ManagerClient
from tests.conftest import System
from tests.helpers import MLP_MANIFEST, make_mlp, save_torchscript

pytestmark = pytest.mark.integration

NAME = "triton-mlp"
#: Registered beside it, never queried (no replica: it scales to zero): a
#: second tenant whose model the first one's key must not list.
OTHER = "triton-other"


@dataclass
class Served:
    key: str
    other_key: str
    model: torch.nn.Module


@pytest.fixture(scope="module")
def served(system: System, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    model = make_mlp(seed=21)
    artifact = save_torchscript(model, tmp_path_factory.mktemp("triton") / "m.pt")
    with ManagerClient(system.manager_url, system.admin_token) as manager:
        try:
            key = manager.register(artifact, {**MLP_MANIFEST, "name": NAME})
            other_key = manager.register(artifact, {**MLP_MANIFEST, "name": OTHER,
                                                    "scaling": {"min_replicas": 0, "max_replicas": 1}})
            assert key is not None and other_key is not None
            with Client(system.master_url, key, timeout=30) as client:
                client.wait_until_ready(NAME, timeout=120)
            yield Served(key, other_key, model)
        finally:
            for name in (NAME, OTHER):
                if any(m.name == name for m in manager.list_models()):
                    manager.delete_model(name)


@pytest.fixture
def triton_client(system: System) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(url=system.master_url.removeprefix("http://"), network_timeout=60)
    yield client
    client.close()


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _x(rows: int) -> np.ndarray:
    return np.random.default_rng(rows).standard_normal((rows, 16)).astype(np.float32)


def test_health_server_and_model_metadata_and_the_repository_index(
    served: Served, triton_client: triton.InferenceServerClient, system: System
) -> None:
    assert triton_client.is_server_live() and triton_client.is_server_ready()
    server = triton_client.get_server_metadata()
    assert server["name"] == "seedserve"
    assert set(server["extensions"]) == {"binary_tensor_data", "model_repository", "statistics"}
    assert triton_client.is_model_ready(NAME, headers=_auth(served.key))
    metadata = triton_client.get_model_metadata(NAME, headers=_auth(served.key))
    assert metadata["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 16]}]
    # The real output shape, observed at warm-up: [N, 4], not [-1].
    assert metadata["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}]
    assert metadata["versions"] == ["1"]

    # The index lists what the key may query: its own model, not the other tenant's; nothing anonymously.
    own = triton_client.get_model_repository_index(headers=_auth(served.key))
    assert own == [{"name": NAME, "version": "1", "state": "READY", "reason": ""}]
    other = triton_client.get_model_repository_index(headers=_auth(served.other_key))
    assert [m["name"] for m in other] == [OTHER]
    assert triton_client.get_model_repository_index() == []
    assert triton_client.get_model_repository_index(headers=_auth("sk_" + "A" * 43)) == []
    # The operator sees both (and whatever else the session registered).
    everything = {m["name"] for m in triton_client.get_model_repository_index(headers=system.operator)}
    assert {NAME, OTHER} <= everything


def test_json_and_binary_inference_give_the_in_process_outputs_and_count_in_the_statistics(
    served: Served, triton_client: triton.InferenceServerClient
) -> None:
    auth = _auth(served.key)
    before = triton_client.get_inference_statistics(NAME, headers=auth)["model_stats"][0]
    x = _x(3)
    expected = served.model(torch.from_numpy(x)).detach().numpy()
    for binary in (False, True):
        tensor = triton.InferInput("x", [3, 16], "FP32")
        tensor.set_data_from_numpy(x, binary_data=binary)
        result = triton_client.infer(NAME, [tensor], outputs=[triton.InferRequestedOutput("y", binary_data=binary)],
                                     headers=auth, request_id=f"q-{binary}")
        np.testing.assert_allclose(result.as_numpy("y"), expected, rtol=1e-5, atol=1e-6)
        assert result.get_response()["id"] == f"q-{binary}"
    # No outputs named: tritonclient asks for every output in binary.
    tensor = triton.InferInput("x", [3, 16], "FP32")
    tensor.set_data_from_numpy(x)
    np.testing.assert_allclose(triton_client.infer(NAME, [tensor], headers=auth).as_numpy("y"), expected,
                               rtol=1e-5, atol=1e-6)

    after = triton_client.get_inference_statistics(NAME, headers=auth)["model_stats"][0]
    assert (after["name"], after["version"]) == (NAME, "1")
    success = after["inference_stats"]["success"]["count"] - before["inference_stats"]["success"]["count"]
    assert success == 3 and after["inference_count"] - before["inference_count"] == 9
    assert after["last_inference"] > 0 and after["inference_stats"]["compute_infer"]["ns"] > 0
    assert sum(b["compute_infer"]["count"] for b in after["batch_stats"]) == after["execution_count"]
    versioned = triton_client.get_inference_statistics(NAME, "1", headers=auth)["model_stats"][0]
    assert versioned["name"] == NAME and versioned["inference_count"] >= after["inference_count"]


def _raised(call: object) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as raised:
        call()  # type: ignore[operator]
    return raised.value


def test_seedserves_errors_reach_tritonclient_as_its_exception_with_seedserves_message(
    served: Served, triton_client: triton.InferenceServerClient
) -> None:
    good = triton.InferInput("x", [1, 16], "FP32")
    good.set_data_from_numpy(_x(1))

    wrong_key = _raised(lambda: triton_client.infer(NAME, [good], headers=_auth("sk_" + "A" * 43)))
    assert wrong_key.status() == "401"
    assert wrong_key.message() == f"no model named {NAME!r} accepts this key; check the model name and the key"
    # An unknown model answers exactly as a wrong key does.
    unknown = _raised(lambda: triton_client.infer("triton-ghost", [good], headers=_auth(served.key)))
    assert unknown.status() == "401"
    assert unknown.message() == wrong_key.message().replace(NAME, "triton-ghost")
    assert _raised(lambda: triton_client.get_model_metadata("triton-ghost", headers=_auth(served.key))).message() \
        == unknown.message()
    assert _raised(lambda: triton_client.get_model_metadata(NAME)).status() == "401"  # no key at all

    bad_shape = triton.InferInput("x", [2, 8], "FP32")
    bad_shape.set_data_from_numpy(np.zeros((2, 8), np.float32))
    shape = _raised(lambda: triton_client.infer(NAME, [bad_shape], headers=_auth(served.key)))
    assert shape.status() in ("400", "422") and shape.message().startswith("input 'x'")
    assert "16" in shape.message()

    bad_datatype = triton.InferInput("x", [1, 16], "BYTES")
    bad_datatype.set_data_from_numpy(np.array([[b"1"] * 16], dtype=np.object_))
    datatype = _raised(lambda: triton_client.infer(NAME, [bad_datatype], headers=_auth(served.key)))
    assert datatype.status() == "400"
    assert datatype.message() == "input 'x': a tensor input takes a numeric datatype, not BYTES"

    unknown_input = triton.InferInput("z", [1, 16], "FP32")
    unknown_input.set_data_from_numpy(_x(1))
    named = _raised(lambda: triton_client.infer(NAME, [unknown_input], headers=_auth(served.key)))
    assert named.status() == "422" and "unknown input 'z'" in named.message()
