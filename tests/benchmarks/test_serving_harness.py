"""The serving benchmark's pure parts: CPU per request from two /proc
samples, the models ``--model`` selects, and the v2 bodies (no server runs)."""

from __future__ import annotations

import json
import os

import pytest
import torch

from benchmarks._cpu import cpu_between, ms_per_request, sample_tree
from benchmarks._model import WORKLOADS
from benchmarks._selection import TUNED_BATCHING, batchable, select, zoo_manifest
from benchmarks._v2_bodies import v2_binary
from benchmarks.grpc import bodies


def test_cpu_between_two_samples_counts_a_new_process_whole_and_an_old_one_by_its_difference() -> None:
    before = {(10, 100): 1.5, (11, 200): 0.25}
    after = {(10, 100): 2.0, (11, 200): 0.25, (12, 300): 0.75}  # pid 12 started during the run
    assert cpu_between(before, after) == pytest.approx(1.25)


def test_a_reused_pid_is_a_new_process() -> None:
    assert cpu_between({(10, 100): 5.0}, {(10, 900): 0.5}) == pytest.approx(0.5)


def test_cpu_ms_per_request_divides_by_the_requests_answered() -> None:
    assert ms_per_request(2.5, 1000) == pytest.approx(2.5)
    assert ms_per_request(1.0, 0) is None


def test_the_sample_of_this_process_holds_it_with_its_start_time() -> None:
    sample = sample_tree(os.getpid())
    assert os.getpid() in {pid for pid, _ in sample}
    assert all(seconds >= 0 for seconds in sample.values())


def test_the_builtin_models_are_registered_with_default_manifests_and_the_tuned_batching_is_the_cnns() -> None:
    models = {served.key: served for served in select()}
    assert set(models) == {"mlp", "cnn"}
    assert all("batching" not in served.manifest for served in models.values())
    assert TUNED_BATCHING == WORKLOADS["cnn"].manifest["batching"] == {"max_batch_size": 16, "max_wait_ms": 5}


def test_a_zoo_image_entry_is_an_image_input_with_a_batch_dimension() -> None:
    manifest = zoo_manifest("cnn-3-16-32@32", [torch.zeros(1, 3, 32, 32)], [torch.zeros(2, 3, 32, 32)])
    assert manifest["name"] == "zoo-cnn-3-16-32-32"
    assert manifest["inputs"] == [{"name": "x", "kind": "image", "size": [32, 32]}]
    assert "batching" not in manifest and batchable(manifest)


def test_a_zoo_graph_entry_keeps_fixed_shapes_and_does_not_batch() -> None:
    one = [torch.zeros(64, 16), torch.zeros(2, 256, dtype=torch.int64)]
    two = [torch.zeros(128, 16), torch.zeros(2, 512, dtype=torch.int64)]
    manifest = zoo_manifest("gcn", one, two)
    assert [(i["name"], i["dtype"], i["shape"]) for i in manifest["inputs"]] == [
        ("x0", "float32", [64, 16]), ("x1", "int64", [2, 256])]
    assert not batchable(manifest)


def test_a_torchscript_file_without_a_manifest_is_refused_with_what_to_add() -> None:
    with pytest.raises(ValueError, match="needs --manifest"):
        select("model.pt")


def test_the_v2_binary_bodies_are_the_ones_the_grpc_benchmark_sends() -> None:
    models = {served.key: served for served in select()}
    for key, served in models.items():
        (expected,) = [b for b in bodies(WORKLOADS[key]) if b.transport == "/v2 HTTP, binary"]
        path, content, headers = v2_binary(served, [1])
        assert (path, content, headers) == (expected.path, expected.content, expected.headers)
        assert json.loads(served.body) == json.loads(WORKLOADS[key].body)
