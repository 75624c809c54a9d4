"""Schemathesis against the manager's own OpenAPI document, over real HTTP:
every operation gets generated cases, valid and invalid, signed in as a user
who owns a model (so that the {name} routes reach real code, not only 404s).
No answer may be a 5xx, and every answer must match the document (status,
content type, body schema).

CI runs a short pass (``SEEDSERVE_FUZZ_EXAMPLES``, 20 cases per operation);
``benchmarks/fuzz.py`` runs the long one."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import positive_data_acceptance

from seedserve.client import ManagerClient
from seedserve.errors import NotFound
from seedserve.manager_app.operations import openapi_document
from tests.fuzzing import EXAMPLES, exempt_checks, record
from tests.helpers import MLP_MANIFEST, make_mlp, save_torchscript
from tests.manager.conftest import Manager


@pytest.fixture(scope="module")
def owner(manager: Manager, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A user with one model, whose token every generated case carries."""
    username, password = f"fuzz-{secrets.token_hex(3)}", "pw-" + secrets.token_urlsafe(12)
    with ManagerClient(manager.url) as client:
        client.signup(username, password)
        token = client.login(username, password)
        artifact = save_torchscript(make_mlp(), tmp_path_factory.mktemp("fuzz") / "m.pt")
        client.register_model(artifact, {**MLP_MANIFEST, "name": "fuzzed"})
    return {"username": username, "password": password, "token": token, "artifact": artifact}


# The document the manager serves at /openapi.json (built the same way in
# process, so the cases can be generated before the manager starts).
schema = schemathesis.openapi.from_dict(openapi_document())


#: Operations whose success depends on what no schema can say: an uploaded
#: model file that must load and run, or a query that must suit the model's
#: declared inputs. Schema-valid cases may rightly get a 4xx there.
CONTENT_DEPENDENT = {("POST", "/api/models"), ("POST", "/api/profile"), ("POST", "/api/models/{name}/try")}

#: The parts of a case the test replaces with valid values (the owner's token,
#: the owned model's name).
REPLACED = {ParameterLocation.PATH, ParameterLocation.HEADER, ParameterLocation.COOKIE}


def _no_5xx_but_the_absent_master(ctx: Any, response: Any, case: Case) -> None:
    """This fixture runs the manager without a master, so "try it" answers its
    documented 503 once a query gets that far; any other 5xx is a failure."""
    if response.status_code >= 500:
        assert response.status_code == 503, response.text
        assert "did not answer" in response.json()["error"]["message"], response.text


def _healthz_names_the_absent_master(ctx: Any, response: Any, case: Case) -> None:
    """Without a master, the manager's readiness answer is its documented 503
    naming the master as down; nothing else may be."""
    if response.status_code >= 500:
        assert response.status_code == 503, response.text
        assert response.json()["down"] == ["master"], response.text


#: Operations whose 5xx is a documented answer, and the check that replaces "no 5xx" for them.
_DOCUMENTED_5XX = {("POST", "/api/models/{name}/try"): _no_5xx_but_the_absent_master,
                   ("GET", "/healthz"): _healthz_names_the_absent_master}


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.function_scoped_fixture])
def test_every_answer_matches_the_document_and_none_is_a_5xx(
    case: Case, owner: dict[str, Any], manager: Manager
) -> None:
    operation = (case.method.upper(), case.operation.path)
    if case.path_parameters and "name" in case.path_parameters and operation != ("DELETE", "/api/models/{name}"):
        case.path_parameters["name"] = "fuzzed"  # the owned model's routes reach real code
    excluded = exempt_checks(case, replaced=REPLACED, content_dependent=CONTENT_DEPENDENT)
    additional = []
    if operation in _DOCUMENTED_5XX:
        excluded.append(not_a_server_error)
        additional.append(_DOCUMENTED_5XX[operation])
    before = manager.db["models"].find_one({"name": "fuzzed"})
    outcome = "failed"
    try:
        response = case.call_and_validate(base_url=manager.url, headers={"Authorization": f"Bearer {owner['token']}"},
                                          excluded_checks=excluded, additional_checks=additional)
        outcome = str(response.status_code)
    finally:
        record(case, outcome)
    after = manager.db["models"].find_one({"name": "fuzzed"})
    assert after is not None and after["owner"] == before["owner"]


def test_sequences_of_operations_answer_as_documented(owner: dict[str, Any], manager: Manager) -> None:
    """Stateful: schemathesis chains operations through the links it infers
    from the document (a token or key created, then rotated, revoked, listed;
    a pinned version then read), so later calls use ids the API handed out.
    Runs last in the module: a sequence may delete the owner's model."""

    # Without the admin's operations: the owner is not the admin, so they only
    # answer 403 and hand out nothing to chain, while their links (a username
    # from sign-up) make what a scenario can draw depend on earlier scenarios.
    class Sequences(schema.exclude(tag="admin").as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            # Each scenario starts from the same shape of state: signed in,
            # owning the model, unpinned, with a key. An earlier scenario may
            # have revoked the token or the keys, pinned or deleted the model;
            # and what a response lacks changes how the next call is drawn,
            # which Hypothesis reports as a flaky strategy.
            with ManagerClient(manager.url) as client:
                self.token = client.login(owner["username"], owner["password"])
                try:
                    client.get_model("fuzzed")
                except NotFound:
                    client.register_model(owner["artifact"], {**MLP_MANIFEST, "name": "fuzzed"})
                client.pin("fuzzed", None)
                if not client.keys("fuzzed"):
                    client.create_key("fuzzed")

        def get_call_kwargs(self, case: Case) -> dict[str, Any]:
            return {"base_url": manager.url, "headers": {"Authorization": f"Bearer {self.token}"}}

        def validate_response(self, response: Any, case: Case, additional_checks: Any = None, **kwargs: Any) -> None:
            operation = (case.method.upper(), case.operation.path)
            excluded = [positive_data_acceptance] if operation in CONTENT_DEPENDENT else []
            additional = []
            if operation in _DOCUMENTED_5XX:
                excluded.append(not_a_server_error)
                additional.append(_DOCUMENTED_5XX[operation])
            record(case, str(response.status_code), prefix="stateful ")
            case.validate_response(response, excluded_checks=excluded, additional_checks=additional,
                                   transport_kwargs=kwargs)

    Sequences.run(settings=settings(max_examples=EXAMPLES, stateful_step_count=6, deadline=None, derandomize=True,
                                    suppress_health_check=list(HealthCheck)))
