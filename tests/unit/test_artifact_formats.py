"""Artifact formats besides TorchScript: torch.export programs and handler
packages (a script with load / preprocess / predict / postprocess plus a
state dict loaded with weights_only=True)."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from seedserve.client.handler import package_handler
from seedserve.codecs import Manifest, sample_inputs
from seedserve.errors import InvalidArtifact, ModelError
from seedserve.runtime import load_model, run_model
from tests.helpers import MLP_MANIFEST, make_mlp

SCRIPT = """
import torch

calls = []

def load(weights):
    model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))
    model.load_state_dict(weights)
    return model

def preprocess(inputs):
    calls.append("preprocess")
    return torch.from_numpy(inputs["x"]) * 2

def predict(model, x):
    return model(x)

def postprocess(y):
    return {"second": y.argmax(1), "first": y}
"""

TWO_OUTPUTS = Manifest.model_validate({**MLP_MANIFEST, "outputs": [{"name": "first"}, {"name": "second"}]})


def _package(tmp_path: Path, script: str = SCRIPT, weights: object = None) -> bytes:
    path = tmp_path / "handler.py"
    path.write_text(script)
    return package_handler(path, tmp_path / "h.zip", weights=weights).read_bytes()  # type: ignore[arg-type]


def test_a_handler_package_runs_its_own_pre_and_postprocessing_with_its_weights(tmp_path: Path) -> None:
    network = make_mlp(seed=4)
    model = load_model(_package(tmp_path, weights=network), "handler")
    x = np.random.default_rng(1).standard_normal((3, 16)).astype(np.float32)
    outputs = run_model(model, TWO_OUTPUTS, {"x": x})
    expected = network(torch.from_numpy(x) * 2).detach().numpy()
    np.testing.assert_allclose(outputs["first"], expected, rtol=1e-5, atol=1e-6)  # a dict maps by declared name
    np.testing.assert_array_equal(outputs["second"], expected.argmax(1))


def test_weights_that_would_run_code_are_refused_and_never_run(tmp_path: Path) -> None:
    canary = tmp_path / "canary"

    class Exploit:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (Path.touch, (str(canary),))

    buffer = io.BytesIO()
    torch.save({"w": Exploit()}, buffer)
    script = tmp_path / "handler.py"
    script.write_text(SCRIPT)
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as package:
        package.write(script, "handler.py")
        package.writestr("weights.pt", buffer.getvalue())
    assert pickle.loads(pickle.dumps(Exploit())) is None and canary.exists()  # the payload does run when unpickled
    canary.unlink()
    with pytest.raises(InvalidArtifact, match="weights_only"):
        load_model((tmp_path / "evil.zip").read_bytes(), "handler")
    assert not canary.exists()


@pytest.mark.parametrize(("files", "message"), [
    ({"model.py": "x = 1"}, "no handler.py"),
    ({"handler.py": "def load(weights):\n    return None\n"}, "must define predict"),
    ({"handler.py": "def load(weights):\n    raise ValueError('no GPU here')\ndef predict(m, x):\n    pass\n"},
     "failed while loading: ValueError: no GPU here"),
    ({"handler.py": "def load(:\n"}, "failed while loading: SyntaxError"),
])
def test_broken_handler_packages_are_refused_with_the_reason(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as package:
        for name, text in files.items():
            package.writestr(name, text)
    with pytest.raises(InvalidArtifact, match=message):
        load_model(buffer.getvalue(), "handler")


def test_not_a_zip_is_refused_saying_how_to_build_one() -> None:
    with pytest.raises(InvalidArtifact, match="package_handler"):
        load_model(b"plain text", "handler")


def test_a_handler_whose_predict_fails_reports_a_model_error(tmp_path: Path) -> None:
    script = ("def load(weights):\n    return None\n"
              "def predict(model, inputs):\n    raise RuntimeError('shape mismatch')\n")
    model = load_model(_package(tmp_path, script), "handler")
    manifest = Manifest.model_validate(MLP_MANIFEST)
    with pytest.raises(ModelError, match="shape mismatch"):
        run_model(model, manifest, sample_inputs(manifest))


def test_a_torch_export_program_computes_what_the_module_does(tmp_path: Path) -> None:
    network = make_mlp(seed=5)
    x = torch.randn(2, 16)
    program = torch.export.export(network, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    model = load_model(buffer.getvalue(), "export")
    manifest = Manifest.model_validate(MLP_MANIFEST)
    y = torch.randn(5, 16)
    np.testing.assert_allclose(run_model(model, manifest, {"x": y.numpy()})["y"], network(y).detach().numpy(),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(InvalidArtifact, match="torch.export.save"):
        load_model(b"not a program", "export")


def test_serving_optimizes_a_torchscript_cnn_only_into_an_equivalent_graph() -> None:
    from seedserve.runtime import optimize_for_serving

    torch.manual_seed(0)
    cnn = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(8, 2)).eval()
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(cnn), buffer)
    model = load_model(buffer.getvalue(), "torchscript")
    manifest = Manifest.model_validate({"name": "cnn", "inputs": [{"name": "x", "shape": [-1, 3, 16, 16]}],
                                        "outputs": [{"name": "y"}]})
    served, how = optimize_for_serving(model, manifest, [sample_inputs(manifest), sample_inputs(manifest, 4)],
                                       repeats=1)
    x = np.random.default_rng(2).standard_normal((3, 3, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(run_model(served, manifest, {"x": x})["y"], cnn(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-4, atol=1e-5)
    assert how.startswith(("frozen and optimized", "runs as loaded (the optimized graph is slower"))
    handler_like, why = optimize_for_serving(cnn, manifest, [sample_inputs(manifest)])
    assert handler_like is cnn and "not TorchScript" in why


def _exported(module: torch.nn.Module, manifest: dict[str, object]) -> torch.nn.Module:
    from seedserve.client.export import export_program

    buffer = io.BytesIO()
    torch.export.save(export_program(module, manifest), buffer)
    return load_model(buffer.getvalue(), "export")  # type: ignore[return-value]


_CNN_MANIFEST = {"name": "cnn", "inputs": [{"name": "x", "shape": [-1, 3, 16, 16]}], "outputs": [{"name": "y"}]}


def test_serving_compiles_an_exported_cnn_into_an_equivalent_graph_that_keeps_the_programs_checks() -> None:
    from seedserve._program import CheckedGraph
    from seedserve.runtime import optimize_for_serving

    torch.manual_seed(0)
    cnn = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(8, 2)).eval()
    manifest = Manifest.model_validate(_CNN_MANIFEST)
    model = _exported(cnn, _CNN_MANIFEST)
    with torch.inference_mode():  # as a replica serves
        served, how = optimize_for_serving(model, manifest, [sample_inputs(manifest), sample_inputs(manifest, 4)],
                                           repeats=1)
        x = np.random.default_rng(2).standard_normal((3, 3, 16, 16)).astype(np.float32)
        np.testing.assert_allclose(run_model(served, manifest, {"x": x})["y"],
                                   cnn(torch.from_numpy(x)).detach().numpy(), rtol=1e-4, atol=1e-5)
        if how.startswith("frozen and optimized"):
            assert isinstance(served, CheckedGraph)
            # The program's own constraint check still names what is wrong with an input.
            with pytest.raises(Exception, match="dimension|shape|size"):
                served(torch.zeros(2, 4, 16, 16))
        else:
            assert how.startswith("runs as loaded (the optimized graph is slower"), how


def test_a_trace_that_kept_one_batch_size_is_not_served() -> None:
    from seedserve.runtime import optimize_for_serving

    class ScalesByBatch(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * x.shape[0]  # a trace may record the batch size as a constant

    manifest = Manifest.model_validate(MLP_MANIFEST)
    model = _exported(ScalesByBatch(), MLP_MANIFEST)
    with torch.inference_mode():
        served, how = optimize_for_serving(model, manifest, [sample_inputs(manifest), sample_inputs(manifest, 4)],
                                           repeats=1)
        x = np.ones((3, 16), dtype=np.float32)
        np.testing.assert_allclose(run_model(served, manifest, {"x": x})["y"], 3 * x)
    assert how == "runs as loaded (the optimized graph changes output 'y')", how


def test_the_profiler_sees_the_same_network_in_either_format() -> None:
    from seedserve.profiler.profile import profile_manifest_model

    torch.manual_seed(0)
    cnn = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(8 * 16 * 16, 2)).eval()
    manifest = Manifest.model_validate(_CNN_MANIFEST)
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(cnn), buffer)
    scripted = profile_manifest_model(load_model(buffer.getvalue(), "torchscript"), manifest)
    exported = profile_manifest_model(_exported(cnn, _CNN_MANIFEST), manifest)
    assert exported.parameters == scripted.parameters == sum(p.numel() for p in cnn.parameters())
    assert exported.weight_bytes == scripted.weight_bytes
    assert [b.flops for b in exported.batches] == [b.flops for b in scripted.batches]
    assert all(b.flops > 0 for b in exported.batches)
