from __future__ import annotations

import asyncio
import json

import pytest

from seedserve.deployments._query import KeyCache, check_key, error_headers, error_parts, wrong_key_limiter
from seedserve.errors import (
    AlreadyExists,
    InputTooLarge,
    InvalidInput,
    RateLimited,
    SeedserveError,
    Unauthenticated,
    Unavailable,
    from_body,
    http_status,
)
from seedserve.registry import hash_key, key_matches, new_key


def test_each_error_maps_to_its_status_through_one_table() -> None:
    assert http_status(InvalidInput("x")) == 400
    assert http_status(InputTooLarge("x")) == 413
    assert http_status(Unauthenticated("x")) == 401
    assert http_status(AlreadyExists("x")) == 409
    assert http_status(Unavailable("x")) == 503


def test_the_sdk_rebuilds_the_named_error_from_the_json_body() -> None:
    original = InputTooLarge("too big", input="image", limit=10)
    rebuilt = from_body(original.to_body(), 413)
    assert type(rebuilt) is InputTooLarge
    assert (rebuilt.message, rebuilt.input, rebuilt.details) == ("too big", "image", {"limit": 10})
    assert type(from_body("<html>", 502)) is SeedserveError


def test_keys_are_random_and_only_their_hash_matches() -> None:
    key = new_key()
    assert key.startswith("sk_") and len(key) > 40 and new_key() != key
    stored = [hash_key(new_key()), hash_key(key)]
    assert key not in "".join(stored)
    assert key_matches(key, stored)
    assert not key_matches(key[:-1], stored)
    assert not key_matches(key, [])


def test_a_model_that_raises_on_valid_inputs_is_a_json_model_error() -> None:
    import numpy as np
    import pytest
    import torch

    from seedserve.codecs import parse_manifest
    from seedserve.errors import ModelError
    from seedserve.runtime import run_model

    class Picky(torch.nn.Module):
        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.one_hot(ids, 3)  # fails for ids >= 3

    manifest = parse_manifest({"name": "p", "inputs": [{"name": "ids", "dtype": "int64", "shape": [-1]}],
                               "outputs": [{"name": "y"}]})
    model = torch.jit.script(Picky())
    assert run_model(model, manifest, {"ids": np.array([0, 2])})["y"].shape == (2, 3)
    with pytest.raises(ModelError, match="the model failed on these inputs: RuntimeError") as caught:
        run_model(model, manifest, {"ids": np.array([5])})
    assert http_status(caught.value) == 500 and caught.value.to_body()["error"]["code"] == "model_error"


def test_wrong_keys_past_the_limit_get_429_while_the_right_key_still_passes() -> None:
    key = new_key()

    async def fetch() -> list[str]:
        return [hash_key(key)]

    keys = KeyCache([hash_key(key)], fetch, interval_s=60, model="m", wrong_keys_per_minute=3)
    for _ in range(3):
        with pytest.raises(Unauthenticated):
            keys.check(key + "x")
    with pytest.raises(RateLimited) as limited:
        keys.check(new_key())
    assert 1 <= limited.value.retry_after_s <= 61
    assert error_headers(limited.value)["Retry-After"] == str(limited.value.retry_after_s)
    assert http_status(limited.value) == 429
    keys.check(key)  # the model's clients are never locked out by guessers


def test_a_known_key_stops_working_once_a_refresh_no_longer_lists_it() -> None:
    kept, revoked = new_key(), new_key()
    listed = [hash_key(kept), hash_key(revoked)]

    async def fetch() -> list[str]:
        return list(listed)

    async def scenario() -> None:
        keys = KeyCache(listed, fetch, interval_s=0.01, model="m")
        keys.check(revoked)  # known from now on, without hashing
        keys.check(revoked)
        listed.remove(hash_key(revoked))
        refresh = asyncio.get_running_loop().create_task(keys.refresh_forever())
        await asyncio.sleep(0.1)
        refresh.cancel()
        with pytest.raises(Unauthenticated):
            keys.check(revoked)
        keys.check(kept)

    asyncio.run(scenario())


def test_an_unknown_model_and_a_wrong_key_get_the_same_status_headers_and_bytes() -> None:
    key = new_key()
    wrong = wrong_key_limiter()
    answers = []
    for hashes in ([], [hash_key(new_key())]):  # no model of that name; a model with other keys
        with pytest.raises(Unauthenticated) as refused:
            check_key("tenant", key, hashes, wrong)
        answers.append(error_parts(refused.value))
    assert answers[0] == answers[1]
    status, headers, body = answers[0]
    assert status == 401 and headers["WWW-Authenticate"] == "Bearer"
    assert json.loads(body) == {"error": {"code": "unauthenticated", "input": "authorization", "message":
                                          "no model named 'tenant' accepts this key; check the model name and the key"}}
    check_key("tenant", key, [hash_key(key)], wrong)  # the right key passes


def test_the_wrong_key_limit_counts_per_model_name_on_the_master() -> None:
    wrong = wrong_key_limiter(2)
    for _ in range(2):
        with pytest.raises(Unauthenticated):
            check_key("a", new_key(), [], wrong)
    with pytest.raises(RateLimited):
        check_key("a", new_key(), [], wrong)
    with pytest.raises(Unauthenticated):
        check_key("b", new_key(), [], wrong)
