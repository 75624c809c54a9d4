"""`seedserve worker join`: the `ray start` line of a node, and what it refuses."""

from __future__ import annotations

import json

from click.testing import CliRunner

from seedserve.cluster.cli import main
from seedserve.cluster.ports import PortPlan
from seedserve.cluster.worker import worker_argv


def _resources(argv: list[str]) -> dict[str, float]:
    value = next(arg for arg in argv if arg.startswith("--resources=")).removeprefix("--resources=")
    resources: dict[str, float] = json.loads(value)
    return resources


def test_a_gpu_node_offers_its_gpus_as_ray_gpus_and_its_type_s_accelerator() -> None:
    argv = worker_argv("127.0.0.1:6379", "nvidia-l4", PortPlan(21500), 1, 0.5, "L4")
    assert "--num-gpus=0.5" in argv and "--num-cpus=1" in argv
    assert _resources(argv) == {"worker:nvidia-l4": 1000, "accelerator_type:L4": 1}


def test_without_num_gpus_ray_counts_the_gpus_and_names_the_accelerator_itself() -> None:
    argv = worker_argv("127.0.0.1:6379", "nvidia-l4", PortPlan(21500), None, None, "L4")
    assert not any(arg.startswith("--num-gpus") for arg in argv)
    assert _resources(argv) == {"worker:nvidia-l4": 1000}


def test_num_gpus_on_a_cpu_type_of_the_catalog_is_a_bad_invocation() -> None:
    result = CliRunner().invoke(main, ["worker", "join", "--address", "127.0.0.1:1", "--type", "cpu-local",
                                       "--num-gpus", "1"])
    assert result.exit_code == 2
    assert "worker type 'cpu-local' is a CPU type in the catalog; drop --num-gpus" in result.output
