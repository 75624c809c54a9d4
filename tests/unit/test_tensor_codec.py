from __future__ import annotations

import base64
import io

import numpy as np
import pytest

from seedserve.codecs import TensorInput, decode_inputs, parse_manifest
from seedserve.codecs.tensor import decode_tensor
from seedserve.errors import InputTooLarge, InvalidInput

SPEC = TensorInput(name="x", shape=[-1, 4])


def _raw(array: np.ndarray) -> dict[str, object]:
    return {"b64": base64.b64encode(array.astype("<f4").tobytes()).decode(), "dtype": "float32",
            "shape": list(array.shape)}


def _npy(array: np.ndarray) -> dict[str, object]:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return {"b64": base64.b64encode(buffer.getvalue()).decode(), "mime": "application/x-npy"}


def test_nested_lists_decode_to_the_declared_dtype() -> None:
    array = decode_tensor([[1, 2, 3, 4], [5, 6, 7, 8]], SPEC)
    assert array.dtype == np.float32 and array.shape == (2, 4)
    assert array[1, 3] == 8


@pytest.mark.parametrize("encode", [_raw, _npy], ids=["raw", "npy"])
def test_binary_forms_decode_to_the_same_array_as_lists(encode: object) -> None:
    expected = np.arange(12, dtype=np.float32).reshape(3, 4)
    decoded = decode_tensor(encode(expected), SPEC)  # type: ignore[operator]
    np.testing.assert_array_equal(decoded, expected)


def test_a_shape_that_does_not_fit_names_the_input_and_both_shapes() -> None:
    with pytest.raises(InvalidInput) as caught:
        decode_tensor([[1, 2, 3]], SPEC)
    assert caught.value.input == "x"
    assert "[1, 3]" in caught.value.message and "[-1, 4]" in caught.value.message


def test_ragged_lists_are_refused() -> None:
    with pytest.raises(InvalidInput, match="ragged"):
        decode_tensor([[1, 2, 3, 4], [1, 2]], SPEC)


def test_float_tensors_take_numeric_strings_and_refuse_other_values() -> None:
    assert decode_tensor([["1", "2.5", 3, True]], SPEC).tolist() == [[1.0, 2.5, 3.0, 1.0]]
    for bad in ([["one", 2, 3, 4]], [[{"a": 1}, 2, 3, 4]]):
        with pytest.raises(InvalidInput, match="expected numbers"):
            decode_tensor(bad, SPEC)
    with pytest.raises(InvalidInput, match="null"):
        decode_tensor([[None, 2, 3, 4]], SPEC)


def test_integer_tensors_refuse_strings_rather_than_guess() -> None:
    with pytest.raises(InvalidInput, match="expected numbers"):
        decode_tensor([["1", "2"]], TensorInput(name="ids", dtype="int64", shape=[-1, 2]))


def test_nan_is_refused_unless_the_manifest_allows_it() -> None:
    with pytest.raises(InvalidInput, match="NaN"):
        decode_tensor(_raw(np.array([[np.nan, 0, 0, 0]])), SPEC)
    allowing = TensorInput(name="x", shape=[-1, 4], allow_nan=True)
    assert np.isnan(decode_tensor(_raw(np.array([[np.nan, 0, 0, 0]])), allowing)[0, 0])


def test_integer_inputs_refuse_fractions_and_out_of_range_values() -> None:
    spec = TensorInput(name="ids", dtype="int8", shape=[-1])
    assert decode_tensor([1, 2.0, -3], spec).tolist() == [1, 2, -3]
    with pytest.raises(InvalidInput, match="non-integer"):
        decode_tensor([1.5], spec)
    with pytest.raises(InvalidInput, match="outside the range"):
        decode_tensor([300], spec)


def test_element_limit_is_checked_from_the_sent_shape_before_decoding() -> None:
    spec = TensorInput(name="x", shape=[-1, 4], max_elements=8)
    # The bytes are deliberately too short: the shape alone must trip the limit.
    claim = {"b64": base64.b64encode(b"\0" * 8).decode(), "dtype": "float32", "shape": [1000, 4]}
    with pytest.raises(InputTooLarge) as caught:
        decode_tensor(claim, spec)
    assert caught.value.details["limit"] == 8 and "4,000 elements" in caught.value.message


def test_byte_count_must_match_the_sent_shape() -> None:
    claim = {"b64": base64.b64encode(b"\0" * 12).decode(), "dtype": "float32", "shape": [1, 4]}
    with pytest.raises(InvalidInput, match="needs 16 bytes, got 12"):
        decode_tensor(claim, SPEC)


def test_invalid_base64_is_refused_not_passed_through() -> None:
    with pytest.raises(InvalidInput, match="not valid base64"):
        decode_tensor({"b64": "***", "dtype": "float32", "shape": [1, 4]}, SPEC)


def test_npy_with_objects_is_refused_without_unpickling() -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.array([object()], dtype=object), allow_pickle=True)
    with pytest.raises(InvalidInput, match="not numeric"):
        decode_tensor({"b64": base64.b64encode(buffer.getvalue()).decode(), "mime": "application/x-npy"}, SPEC)


def test_queries_name_unknown_and_missing_inputs() -> None:
    manifest = parse_manifest({"name": "m", "inputs": [{"name": "x", "shape": [-1, 4]}], "outputs": [{"name": "y"}]})
    with pytest.raises(InvalidInput) as unknown:
        decode_inputs(manifest, {"x": [[0, 0, 0, 0]], "extra": 1})
    assert unknown.value.input == "extra"
    with pytest.raises(InvalidInput) as missing:
        decode_inputs(manifest, {})
    assert missing.value.input == "x"
    with pytest.raises(InvalidInput, match="JSON object"):
        decode_inputs(manifest, [1, 2])
