"""What model replicas and Ray nodes are given: no database address, no
token; and the HAProxy config rewrite that keeps /-/routes off the public port."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ray.serve._private.haproxy_templates import HAPROXY_CONFIG_TEMPLATE

from seedserve.cluster.components import RAY_NODE_SECRETS, operator_token_hashes, ray_node_environ
from seedserve.cluster.haproxy import MASTER_ROUTES_PATH, ROUTES_ACL, without_routes_answer
from seedserve.deployments import _master_link as master_link
from seedserve.deployments.serve_config import master_application, model_application
from seedserve.registry.key_hashes import hash_key
from seedserve.settings import Settings


def _version() -> dict[str, Any]:
    manifest = {"name": "m", "inputs": [{"name": "x", "shape": [-1, 4]}], "outputs": [{"name": "y"}]}
    return {"name": "m", "version": 1, "manifest": manifest, "artifact": {"sha256": "abc"}}


def test_a_model_application_carries_no_database_address_or_name() -> None:
    for own_route in (False, True):
        args = model_application(_version(), own_route=own_route)["args"]
        assert args == {"name": "m", "version": 1, "artifact_sha256": "abc"}


def test_the_master_gets_token_hashes_never_the_tokens() -> None:
    settings = Settings(metrics_token="mt_secret")  # type: ignore[arg-type]
    hashes = operator_token_hashes(settings, "adm_secret")
    assert hashes == [hash_key("adm_secret"), hash_key("mt_secret")]
    master = master_application(mongo_uri="mongodb://db", database="d", dashboard_url="http://x",
                                reconcile_interval_s=1, token_sha256=hashes)
    assert master["args"]["token_sha256"] == sorted(hashes)
    assert "secret" not in repr(master)
    assert operator_token_hashes(Settings(), "adm_secret") == [hash_key("adm_secret")]


def test_ray_nodes_inherit_no_database_uri_or_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in RAY_NODE_SECRETS:
        monkeypatch.setenv(name, "mongodb://user:pw@db/secret")
    monkeypatch.setenv("SEEDSERVE_LATENCY_REPORT_S", "2")
    env = ray_node_environ({"RAY_SERVE_HAPROXY_STATS_PORT": "1"}, tmp_path)
    assert not set(RAY_NODE_SECRETS) & env.keys()
    assert "mongodb://" not in repr(env)
    assert env["SEEDSERVE_LATENCY_REPORT_S"] == "2" and env["RAY_SERVE_HAPROXY_STATS_PORT"] == "1"
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    wrapper = Path(env["RAY_SERVE_HAPROXY_BINARY_PATH"])
    assert wrapper.parent == tmp_path and wrapper.stat().st_mode & 0o111


def test_rays_haproxy_template_still_has_the_routes_rule_the_wrapper_switches_off() -> None:
    # A Ray upgrade that changes this line makes the wrapper refuse to start HAProxy: this test says so first.
    assert ROUTES_ACL in HAPROXY_CONFIG_TEMPLATE
    rendered = HAPROXY_CONFIG_TEMPLATE.replace(
        "{{ route_info.status }} content-type {{ route_info.routes_content_type }} "
        "string \"{{ route_info.routes_message }}\"",
        '200 content-type application/json string "{\\"/models/a\\":\\"model-a\\"}"')
    rewritten = without_routes_answer(rendered)
    assert "model-a" not in rewritten and f"http-request set-path {MASTER_ROUTES_PATH} if routes" in rewritten
    assert without_routes_answer(rewritten) == rewritten
    assert MASTER_ROUTES_PATH == master_link.MASTER_ROUTES_PATH
    with pytest.raises(ValueError, match="acl routes path -i /-/routes"):
        without_routes_answer("frontend f\n")


def test_the_master_document_asks_a_token_of_the_operational_endpoints_and_a_key_of_every_model_route() -> None:
    from seedserve.deployments.master_document import master_document

    paths = master_document()["paths"]
    for path in ("/metrics", "/cluster", "/-/routes"):
        assert paths[path]["get"]["security"] == [{"operator_token": []}] and "401" in paths[path]["get"]["responses"]
    for path in ("/v2/models/{name}", "/v2/models/{name}/ready"):
        assert "security" not in paths[path]["get"] and "401" in paths[path]["get"]["responses"]  # the model key
    for path in ("/healthz", "/v2/health/live"):
        assert paths[path]["get"]["security"] == [{}]
