"""`seedserve up`'s supervisor: a child that can be restarted is, a
crash-looping one stops the system, and one that cannot be restarted stops it
at once. Real child processes (`sleep`, `true`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from seedserve.cluster import processes
from seedserve.cluster.processes import Child, start_child, supervise


def test_a_restartable_child_is_restarted_until_it_crash_loops(tmp_path: Path) -> None:
    said: list[str] = []
    started: list[Child] = []

    def dies_at_once() -> Child:
        child = start_child("database", ["true"], tmp_path / "db.log")
        started.append(child)
        return child

    def start(children: list[Child]) -> None:
        first = dies_at_once()
        first.restart = dies_at_once
        children.append(first)
        children.append(start_child("ray", ["sleep", "60"], tmp_path / "ray.log"))

    with pytest.raises(RuntimeError, match=rf"database exited unexpectedly \({processes.MAX_RESTARTS} restarts"):
        supervise(start, said.append)
    assert said.count("database exited with code 0; restarting it") == processes.MAX_RESTARTS
    assert len(started) == processes.MAX_RESTARTS + 1
    assert not any(child.alive() for child in started)


def test_a_child_without_restart_stops_the_system(tmp_path: Path) -> None:
    sleeper: list[Child] = []

    def start(children: list[Child]) -> None:
        sleeper.append(start_child("manager", ["sleep", "60"], tmp_path / "m.log"))
        children += [sleeper[0], start_child("ray", ["false"], tmp_path / "ray.log")]

    with pytest.raises(RuntimeError, match="ray exited unexpectedly:"):
        supervise(start, lambda line: None)
    assert not sleeper[0].alive()  # stopped with the rest


def test_ray_token_is_generated_only_where_ray_finds_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from seedserve.cluster.components import _ray_token_exists

    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "token"))
    assert not _ray_token_exists()
    (tmp_path / "token").write_text("\n")
    assert not _ray_token_exists()  # an empty file is no token
    (tmp_path / "token").write_text("abc\n")
    assert _ray_token_exists()
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "missing"))
    monkeypatch.setenv("RAY_AUTH_TOKEN", "xyz")
    assert _ray_token_exists()
