"""The head's join command and a joining node's Ray options (pure; no Ray)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from pydantic import ValidationError

from seedserve.cluster.up import join_command, join_lines
from seedserve.cluster.worker import node_address, node_args
from seedserve.settings import Settings


def test_an_advertised_head_prints_a_join_command_with_its_address_and_the_token_in_the_environment() -> None:
    command = join_command(Settings(advertise="198.18.0.1", ray_port=6400), "tok en'x")
    words = shlex.split(command)
    assert words[0] == "RAY_AUTH_TOKEN=tok en'x"  # one shell word, as pasted
    assert words[1:] == ["seedserve", "worker", "join", "--address", "198.18.0.1:6400", "--type", "TYPE"]


def test_a_loopback_head_prints_no_token_and_says_how_to_let_other_machines_join() -> None:
    lines = join_lines(Settings(), "secret-token")
    assert "secret-token" not in lines
    assert "seedserve worker join --address 127.0.0.1:6379 --type TYPE" in lines
    assert "--advertise ADDRESS" in lines


def test_an_ipv6_head_is_bracketed_in_the_join_address() -> None:
    assert "--address [fd00::5]:6379 " in join_command(Settings(advertise="fd00::5"), None)


@pytest.mark.parametrize("value", ["0.0.0.0", "::", "head.example.com"])
def test_advertise_must_be_one_ip_address_and_the_error_says_what_to_give(value: str) -> None:
    with pytest.raises(ValidationError, match=f"advertise={value!r} .*give the address of this machine"):
        Settings(advertise=value)


def test_a_joining_node_takes_its_address_from_the_route_to_the_head_and_its_own_temp_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("RAY_TMPDIR", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    assert node_args("127.0.0.1:6379", None, None) == [
        "--node-ip-address=127.0.0.1", f"--temp-dir={tmp_path / 'ray'}"]
    assert node_args("127.0.0.1:6379", "10.1.2.3", tmp_path / "r") == [
        "--node-ip-address=10.1.2.3", f"--temp-dir={tmp_path / 'r'}"]


def test_a_head_address_without_a_port_is_refused_with_what_to_check() -> None:
    with pytest.raises(RuntimeError, match="no route from this machine to the head at 'headonly'.*--address"):
        node_address("headonly")
