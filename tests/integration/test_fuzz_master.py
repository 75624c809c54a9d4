"""Schemathesis against the master's own OpenAPI document, over real HTTP to
the real master and a real model replica (the session's ``seedserve up``).
Every operation gets generated cases, valid and invalid, aimed at a
registered model with its key, so the {name} routes reach the model's own
decoding, not only 404s. No answer may be a 5xx, every answer must match the
document, and the model must answer as before afterwards.

CI runs 20 cases per operation (``SEEDSERVE_FUZZ_EXAMPLES``);
``benchmarks/fuzz.py --target master`` runs the long pass."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import ignored_auth

from seedserve.client import Client, ManagerClient
from seedserve.deployments.master_document import master_document
from tests.conftest import System
from tests.fuzzing import EXAMPLES, exempt_checks, record
from tests.helpers import MLP_MANIFEST, error_fields, eventually, make_mlp, save_torchscript

pytestmark = pytest.mark.integration

NAME = "fuzzmaster"
PROBE = [[0.25] * 16]


@pytest.fixture(scope="module")
def target(system: System, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A registered model, answering, with its key; deleted after the module."""
    artifact = save_torchscript(make_mlp(seed=7), tmp_path_factory.mktemp("fuzz-master") / "m.pt")
    with ManagerClient(system.manager_url, system.admin_token) as manager:
        key = manager.register(artifact, {**MLP_MANIFEST, "name": NAME})
        assert key is not None
        with Client(system.master_url, key, timeout=30) as client:
            before = eventually(lambda: client.predict(NAME, x=PROBE), timeout_s=120)["y"]
        yield {"key": key, "answer": before}
        with Client(system.master_url, key, timeout=30) as client:
            after = client.predict(NAME, x=PROBE)["y"]
        # Nothing the fuzzer sent changed the model or its keys.
        np.testing.assert_allclose(after, before, rtol=1e-5)
        assert manager.get_model(NAME).version == 1 and len(manager.keys(NAME)) == 1
        manager.delete_model(NAME)


# The document the master serves at /openapi.json, built the same way in process.
schema = schemathesis.openapi.from_dict(master_document())

#: Operations whose success depends on what no schema can say: a query must
#: suit the model's declared inputs, so a schema-valid one may rightly get a 4xx.
CONTENT_DEPENDENT = {("POST", "/models/{name}/predict"), ("POST", "/models/{name}/versions/{version}/predict"),
                     ("POST", "/v2/models/{name}/infer"), ("POST", "/v2/models/{name}/versions/{version}/infer")}

#: Operations whose "invalid credentials get 401" check is left to
#: test_tenant_endpoints.py: each wrong key counts against the replica's
#: limit of WRONG_KEYS_PER_MINUTE (then 429, as it should), and with these
#: six the fuzzer's invalid keys would pass it within the minute.
AUTH_TESTED_ELSEWHERE = {("GET", "/v2/models/{name}"), ("GET", "/v2/models/{name}/ready"),
                         ("GET", "/v2/models/{name}/stats"),
                         ("GET", "/v2/models/{name}/versions/{version}"),
                         ("GET", "/v2/models/{name}/versions/{version}/ready"),
                         ("GET", "/v2/models/{name}/versions/{version}/stats")}

#: The parts of a case the test replaces with valid values (the model's name
#: and version, its key).
REPLACED = {ParameterLocation.PATH, ParameterLocation.HEADER}


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.function_scoped_fixture])
def test_every_master_answer_matches_the_document_and_none_is_a_5xx(
    case: Case, target: dict[str, Any], system: System
) -> None:
    if case.path_parameters:
        case.path_parameters = {k: (NAME if k == "name" else 1) for k in case.path_parameters}
    excluded = exempt_checks(case, replaced=REPLACED, content_dependent=CONTENT_DEPENDENT)
    if (case.method.upper(), case.operation.path) in AUTH_TESTED_ELSEWHERE:
        excluded.append(ignored_auth)
    headers = {"Authorization": f"Bearer {target['key']}"}
    outcome = "failed"
    try:
        response = case.call_and_validate(base_url=system.master_url, headers=headers, excluded_checks=excluded)
        outcome = str(response.status_code)
    finally:
        record(case, outcome)


def test_the_master_serves_the_document_and_answers_405_with_allow(
    system: System, target: dict[str, Any], http: Any
) -> None:
    served = http.get(system.master_url + "/openapi.json")
    assert served.status_code == 200 and served.json() == master_document()
    for method, path, allow in [("DELETE", "/v2/health/live", "GET"), ("GET", f"/v2/models/{NAME}/infer", "POST"),
                                ("GET", f"/models/{NAME}/predict", "POST"),  # answered by the model's replica
                                ("PUT", f"/models/{NAME}/versions/1/predict", "POST")]:
        wrong = http.request(method, system.master_url + path, headers={"Authorization": f"Bearer {target['key']}"})
        assert (wrong.status_code, wrong.headers.get("allow")) == (405, allow), (method, path, wrong.text)
        assert error_fields(wrong)["code"] == "method_not_allowed"

