from __future__ import annotations

import pytest

from seedserve.codecs import parse_manifest
from seedserve.codecs.registry import REGISTRY, Registry, codec_for
from seedserve.errors import InvalidManifest

VALID = {"name": "mlp", "inputs": [{"name": "x", "shape": [-1, 16]}], "outputs": [{"name": "y"}]}


def test_a_valid_manifest_gets_defaults_for_serving() -> None:
    manifest = parse_manifest(VALID)
    assert manifest.inputs[0].kind == "tensor" and manifest.inputs[0].dtype == "float32"
    assert manifest.scaling.min_replicas == 1 and manifest.scaling.num_cpus < 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": "Has Spaces"}, "name"),
        ({"inputs": []}, "inputs"),
        ({"inputs": [{"name": "x", "shape": [-2, 3]}]}, "inputs.0.shape"),
        ({"inputs": [{"name": "x", "shape": [3], "dtype": "complex64"}]}, "inputs.0.dtype"),
        ({"outputs": [{"name": "y"}, {"name": "y"}]}, "outputs"),
        ({"scaling": {"min_replicas": 3, "max_replicas": 2}}, "scaling"),
        ({"surprise": True}, "surprise"),
    ],
)
def test_each_bad_field_is_named_in_the_error(change: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidManifest) as caught:
        parse_manifest({**VALID, **change})
    fields = [problem["field"] for problem in caught.value.details["problems"]]
    assert any(f == field or f.startswith(field) for f in fields), fields
    assert caught.value.input in fields


def test_the_scaling_error_quotes_the_values() -> None:
    with pytest.raises(InvalidManifest, match=r"min_replicas \(3\) exceeds max_replicas \(2\)"):
        parse_manifest({**VALID, "scaling": {"min_replicas": 3, "max_replicas": 2}})


def test_codec_registry_refuses_duplicates_and_unknown_kinds() -> None:
    with pytest.raises(ValueError, match="already registered"):
        Registry([*REGISTRY.values(), REGISTRY["tensor"]])
    with pytest.raises(LookupError, match="known kinds: .*'tensor'"):
        codec_for("hologram")


def test_classifier_outputs_get_top_k_labels_with_softmax_scores() -> None:
    import numpy as np

    from seedserve.codecs.outputs import encode_outputs

    manifest = parse_manifest({**VALID, "outputs": [{"name": "y", "labels": ["cat", "dog", "owl"], "top_k": 2}]})
    encoded = encode_outputs(manifest, {"y": np.array([[0.0, 2.0, 1.0], [5.0, 0.0, 0.0]], np.float32)})
    assert encoded["y"] == [[0.0, 2.0, 1.0], [5.0, 0.0, 0.0]]
    first, second = encoded["y_top_k"]
    assert [e["label"] for e in first] == ["dog", "owl"] and [e["label"] for e in second] == ["cat", "dog"]
    assert abs(first[0]["score"] - np.exp(2) / (1 + np.exp(1) + np.exp(2))) < 1e-5
