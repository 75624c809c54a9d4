from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from seedserve.cluster.ports import SPAN, PortPlan
from seedserve.settings import Settings


def test_every_internal_port_lies_inside_the_plans_block() -> None:
    plan = PortPlan(23000)
    numbers = [int(v) for v in plan.serve_env().values()]
    numbers += [int(re.search(r"=(\d+)$", arg).group(1)) for arg in plan.ray_start_args()]  # type: ignore[union-attr]
    assert all(23000 <= n < 23000 + SPAN for n in numbers)


def test_settings_refuse_two_components_on_one_port_and_say_which() -> None:
    with pytest.raises(ValidationError, match="manager_port and master_port are both 9000"):
        Settings(master_port=9000, manager_port=9000)


def test_settings_refuse_a_port_inside_the_internal_block() -> None:
    with pytest.raises(ValidationError, match="master_port=20010 falls inside internal ports 20000-21499"):
        Settings(master_port=20010)


def test_settings_come_from_prefixed_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEEDSERVE_MASTER_PORT", "8123")
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    settings = Settings()
    assert settings.master_port == 8123 and settings.ray_address == "10.0.0.1:6379"


def test_up_checks_each_sampled_internal_port_not_just_the_last() -> None:
    from seedserve.cluster.up import ports_to_check

    internal = [p for name, p in ports_to_check(Settings()).items() if name.startswith("internal port")]
    assert internal == [20000, 20002, 20010, 20012]
