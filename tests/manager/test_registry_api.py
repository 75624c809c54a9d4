from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from seedserve.client import ManagerClient
from seedserve.errors import InvalidArtifact, NotFound
from tests.helpers import MLP_MANIFEST, make_mlp, save_torchscript
from tests.manager.conftest import Manager


def _artifacts(manager: Manager) -> int:
    return len(list(manager.db["artifacts.files"].find())) + len(list(manager.db["artifacts.chunks"].find()))


def _collections(manager: Manager) -> list[str]:
    """Every collection in the database. nx-27017 lists "a.b" as "a_b" (and
    hangs on a query by that name), so its names are mapped back to ours."""
    ours = {"artifacts_files": "artifacts.files", "artifacts_chunks": "artifacts.chunks"}
    return [ours.get(name, name) for name in manager.db.list_collection_names()]


def test_registration_stores_the_document_and_artifact_but_never_the_key(manager: Manager, tmp_path: Path) -> None:
    artifact = save_torchscript(make_mlp(), tmp_path / "m.pt")
    with ManagerClient(manager.url, manager.token) as client:
        key = client.register(artifact, {**MLP_MANIFEST, "name": "stored"})
        shown = client.get_model("stored")
    assert shown.artifact is not None and shown.artifact.size == artifact.stat().st_size
    assert key is not None and "sha256" not in json.dumps([k.model_dump(mode="json") for k in shown.keys])
    everything = "".join(repr(list(manager.db[name].find())) for name in _collections(manager))
    assert key not in everything and key[3:20] not in everything


def test_an_artifact_over_the_limit_is_refused_while_streaming_and_leaves_nothing(manager: Manager) -> None:
    before = _artifacts(manager)

    def body() -> Iterator[bytes]:  # chunked: no Content-Length to check up front
        boundary = b"--xyz\r\n"
        yield boundary + b'Content-Disposition: form-data; name="manifest"\r\n\r\n'
        yield json.dumps({**MLP_MANIFEST, "name": "huge"}).encode() + b"\r\n"
        yield boundary + b'Content-Disposition: form-data; name="artifact"; filename="a.pt"\r\n\r\n'
        for _ in range(64):
            yield b"\0" * 65536

    response = httpx.post(
        manager.url + "/api/models", content=body(), timeout=60,
        headers={"Authorization": f"Bearer {manager.token}", "Content-Type": "multipart/form-data; boundary=xyz"},
    )
    assert response.status_code == 413
    assert "exceeds the limit of" in response.json()["error"]["message"]
    assert _artifacts(manager) == before
    assert manager.db.models.find_one({"_id": "huge"}) is None


def test_a_declared_oversized_body_is_refused_before_it_is_read(manager: Manager) -> None:
    refused = httpx.post(manager.url + "/api/models", content=b"\0" * (2 * 2**20),
                         headers={"Authorization": f"Bearer {manager.token}",
                                  "Content-Type": "multipart/form-data; boundary=x"})
    assert refused.status_code == 413, refused.text
    assert refused.json()["error"]["code"] == "input_too_large"


def test_malformed_forms_get_4xx_json(manager: Manager) -> None:
    auth = {"Authorization": f"Bearer {manager.token}"}
    no_artifact = httpx.post(manager.url + "/api/models", data={"manifest": json.dumps(MLP_MANIFEST)}, headers=auth)
    assert no_artifact.status_code == 400 and no_artifact.json()["error"]["input"] == "artifact"
    not_json = httpx.post(manager.url + "/api/models", data={"manifest": "{"}, files={"artifact": ("a", b"x")},
                          headers=auth)
    assert not_json.status_code == 422 and not_json.json()["error"]["input"] == "manifest"
    broken = httpx.post(manager.url + "/api/models", content=b"--x\r\ngarbage",
                        headers={**auth, "Content-Type": "multipart/form-data; boundary=x"})
    assert 400 <= broken.status_code < 500 and "error" in broken.json()
    unknown_route = httpx.get(manager.url + "/api/nothing", headers=auth)
    assert unknown_route.status_code == 404 and unknown_route.json()["error"]["code"] == "not_found"


def test_delete_removes_the_document_and_its_artifact(manager: Manager, tmp_path: Path) -> None:
    artifact = save_torchscript(make_mlp(), tmp_path / "m.pt")
    before = _artifacts(manager)
    with ManagerClient(manager.url, manager.token) as client:
        client.register(artifact, {**MLP_MANIFEST, "name": "doomed"})
        assert _artifacts(manager) > before
        client.delete_model("doomed")
        with pytest.raises(NotFound):
            client.get_model("doomed")
        with pytest.raises(NotFound):
            client.delete_model("doomed")
    assert _artifacts(manager) == before


def test_versions_are_listed_pinned_and_deleted_with_their_model(manager: Manager, tmp_path: Path) -> None:
    auth = {"Authorization": f"Bearer {manager.token}"}
    before = _artifacts(manager)
    with ManagerClient(manager.url, manager.token) as client:
        key = client.register(save_torchscript(make_mlp(0), tmp_path / "a.pt"), {**MLP_MANIFEST, "name": "multi"})
        assert key is not None
        assert client.register(save_torchscript(make_mlp(1), tmp_path / "b.pt"),
                               {**MLP_MANIFEST, "name": "multi"}) is None
        versions = client.versions("multi")
        assert [(v.version, v.serving) for v in versions] == [(1, False), (2, True)]
        assert versions[0].artifact.sha256 != versions[1].artifact.sha256
        shown = client.get_model("multi")
        assert (shown.version, shown.latest, shown.pinned, shown.versions) == (2, 2, None, [1, 2])
        assert client.pin("multi", 1).version == 1
        assert client.get_model("multi").version == 1
        for bad in (b'{"version": "1"}', b'{"version": true}', b"{}", b"[1]", b"not json"):
            response = httpx.put(manager.url + "/api/models/multi/pin", content=bad, headers=auth)
            assert response.status_code == 400 and response.json()["error"]["input"] == "version", bad
        with pytest.raises(NotFound, match="no version 5"):
            client.pin("multi", 5)
        assert client.get_model("multi").version == 1  # refused pins changed nothing
        assert client.pin("multi", None).version == 2
        assert httpx.get(manager.url + "/api/models/multi/versions/2", headers=auth).json()["serving"] is True
        assert httpx.get(manager.url + "/api/models/multi/versions/9", headers=auth).status_code == 404
        client.delete_model("multi")
        with pytest.raises(NotFound):
            client.versions("multi")
    assert _artifacts(manager) == before
    assert list(manager.db.versions.find({"name": "multi"})) == []


def test_a_failing_new_version_stores_nothing(manager: Manager, tmp_path: Path) -> None:
    with ManagerClient(manager.url, manager.token) as client:
        client.register(save_torchscript(make_mlp(), tmp_path / "a.pt"), {**MLP_MANIFEST, "name": "stable"})
        before = _artifacts(manager)
        broken = tmp_path / "broken.pt"
        broken.write_bytes(b"not a model")
        with pytest.raises(InvalidArtifact):
            client.register(broken, {**MLP_MANIFEST, "name": "stable"})
        assert [v.version for v in client.versions("stable")] == [1]
        assert client.get_model("stable").latest == 1
    assert _artifacts(manager) == before


def test_torchscript_is_registered_with_a_deprecation_warning_and_an_exported_program_without(
    manager: Manager, tmp_path: Path
) -> None:
    from seedserve.client.export import save_program

    scripted = save_torchscript(make_mlp(), tmp_path / "m.pt")
    exported = save_program(make_mlp(), MLP_MANIFEST, tmp_path / "m.pt2")
    with ManagerClient(manager.url, manager.token) as client:
        with pytest.warns(FutureWarning, match="save_program"):
            client.register(scripted, {**MLP_MANIFEST, "name": "scripted"})
        answer = client.register_model(exported, {**MLP_MANIFEST, "name": "exported"})
        assert answer.warnings == [] and "warnings" not in answer.model_fields_set and answer.version == 1
        exported_artifact = client.get_model("exported").artifact
        assert exported_artifact is not None and exported_artifact.format == "export"
    raw = httpx.post(manager.url + "/api/models", headers={"Authorization": f"Bearer {manager.token}"},
                     data={"manifest": json.dumps({**MLP_MANIFEST, "name": "scripted"}), "format": "torchscript"},
                     files={"artifact": ("m.pt", scripted.read_bytes())}, timeout=120)
    assert raw.status_code == 201 and "torch.export" in raw.json()["warnings"][0]
