"""The kind registry: one object per input kind that everything else reads,
light to import, strict about names."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

from seedserve.codecs import Manifest, parse_manifest
from seedserve.codecs.kind import Form, Kind, resolve
from seedserve.codecs.registry import KINDS, REGISTRY, Registry, kind, kinds_of, mime_types
from seedserve.codecs.tensor import TensorInput
from seedserve.errors import InvalidManifest

DATA = Path(__file__).parent.parent / "data"
HEAVY = ("torch", "PIL", "librosa", "soundfile", "soxr", "ray", "starlette")


def _imported_after(code: str) -> list[str]:
    """The libraries of :data:`HEAVY` that ``code`` imports, run in a fresh interpreter."""
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return [m for m in json.loads(out.stdout.strip().splitlines()[-1]) if m in HEAVY]


def test_reading_the_registry_imports_no_decoding_library() -> None:
    code = "from seedserve.codecs.registry import REGISTRY\nfor k in REGISTRY.values(): k.spec.model_json_schema()"
    assert _imported_after(code) == []


def test_a_kinds_decoder_loads_its_library_on_first_use() -> None:
    code = (f"from seedserve.codecs import parse_manifest, decode_inputs\n"
            f"m = parse_manifest({{'name': 'm', 'inputs': [{{'name': 'i', 'kind': 'image', 'size': [8, 8]}}], "
            f"'outputs': [{{'name': 'y'}}]}})\n"
            f"assert 'PIL' not in sys.modules\n"
            f"decode_inputs(m, {{'i': open({str(DATA / 'image.png')!r}, 'rb').read()}})")
    assert _imported_after(code) == ["PIL"]


def test_every_listed_kind_is_registered_in_order_and_in_the_manifest_union() -> None:
    assert list(REGISTRY) == [resolve(path).name for path in KINDS]
    union = Manifest.model_json_schema()["$defs"]
    for name, item in REGISTRY.items():
        assert item.spec.__name__ in union, name
        assert item.spec.model_fields["kind"].default == name


def test_an_unknown_kind_is_refused_by_name_with_the_known_ones() -> None:
    with pytest.raises(LookupError, match=r"'hologram'; known kinds: \['audio', .*'tensor'"):
        kind("hologram")
    assert "hologram" not in REGISTRY and "image" in REGISTRY
    with pytest.raises(InvalidManifest, match="hologram"):
        parse_manifest({"name": "m", "inputs": [{"name": "x", "kind": "hologram"}], "outputs": [{"name": "y"}]})


def test_a_kind_registered_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="'tensor' is already registered"):
        Registry([kind("image"), kind("tensor"), kind("tensor")])
    with pytest.raises(TypeError, match="not a Kind"):
        Registry([TensorInput])  # type: ignore[list-item]


def test_a_kind_whose_spec_names_another_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="must default 'kind' to 'vector'"):
        Kind(name="vector", spec=TensorInput, decoder="a:b", sampler="a:b", wire="tensor", form=Form("json"), doc="")


def test_paths_that_name_nothing_say_what_is_missing() -> None:
    with pytest.raises(LookupError, match="has no attribute 'decode_nothing'"):
        resolve("seedserve.codecs.tensor:decode_nothing")
    with pytest.raises(ValueError, match="not a 'module:attribute' path"):
        resolve("seedserve.codecs.tensor")


def test_the_mime_table_is_every_kinds_files_and_refuses_disagreement() -> None:
    table = mime_types()
    assert table[".png"] == "image/png" and table[".flac"] == "audio/flac" and table[".npy"] == "application/x-npy"

    class Npz(BaseModel):
        kind: str = "npz"

    other = Kind(name="npz", spec=Npz, decoder="a:b", sampler="a:b", wire="file", form=Form("file"), doc="",
                 mimes={".npy": "application/octet-stream"})
    with pytest.raises(ValueError, match=r"'npz' gives \.npy the type application/octet-stream"):
        Registry([kind("tensor"), other]).mime_types()


def test_inputs_batch_as_their_kind_says() -> None:
    manifest = parse_manifest({"name": "m", "outputs": [{"name": "y"}], "inputs": [
        {"name": "x", "shape": [-1, 2]}, {"name": "g", "kind": "graph", "node_features": 1}]})
    kinds = kinds_of(manifest.inputs)
    assert kinds["x"].batcher is resolve("seedserve.codecs.batching:ROWS")
    assert kinds["g"].batcher is resolve("seedserve.codecs.batching:GRAPHS")
    assert [k.fixed_batch(s) for k, s in zip(kinds.values(), manifest.inputs, strict=True)] == [False, False]
    assert kind("tensor").fixed_batch(TensorInput(name="x", shape=[4, 2]))
