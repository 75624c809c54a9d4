"""A Serve application that is not seedserve's, deployed beside it by
tests/integration/test_coexistence.py with `serve run` (``hello``) and with
`serve deploy` (``build``)."""

from typing import Any

from ray import serve
from starlette.requests import Request


@serve.deployment(ray_actor_options={"num_cpus": 0.05})
class Beside:
    def __init__(self, word: str) -> None:
        self._word = word

    def __call__(self, request: Request) -> str:
        return self._word


hello = Beside.bind("from serve run")


def build(args: dict[str, Any]) -> Any:
    return Beside.bind(str(args.get("word", "from serve deploy")))
