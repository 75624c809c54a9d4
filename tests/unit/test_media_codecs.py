"""Image and audio decoding on a corpus of real files under tests/data
(made by tests/data/make_corpus.sh with Pillow, sox and espeak-ng)."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest

from seedserve.codecs import AudioInput, ImageInput
from seedserve.codecs.audio import decode_audio
from seedserve.codecs.image import decode_image
from seedserve.errors import InputTooLarge, InvalidInput, UnsupportedMediaType

DATA = Path(__file__).parent.parent / "data"
IMAGE = ImageInput(name="img", size=(32, 48))


@pytest.mark.parametrize(
    "filename",
    ["image.png", "image.jpg", "image_progressive.jpg", "image_cmyk.jpg", "image.webp", "image.bmp", "image.gif",
     "image.tiff"],
)
def test_every_image_format_decodes_to_the_declared_layout(filename: str) -> None:
    array = decode_image((DATA / filename).read_bytes(), IMAGE)
    assert array.shape == (1, 3, 32, 48) and array.dtype == np.float32
    assert 0.0 <= array.min() and array.max() <= 1.0
    # The red square is in the top-left corner in every format.
    red, green = array[0, 0, 10, 10], array[0, 1, 10, 10]
    assert red > 0.7 and green < 0.3, (filename, red, green)


def test_json_base64_and_raw_bytes_decode_to_identical_arrays() -> None:
    data = (DATA / "image.png").read_bytes()
    as_json = {"b64": base64.b64encode(data).decode(), "mime": "image/png"}
    np.testing.assert_array_equal(decode_image(as_json, IMAGE), decode_image(data, IMAGE))


def test_exif_orientation_is_honoured() -> None:
    spec = ImageInput(name="img", size=(48, 32), dtype="uint8", layout="HWC")  # shown 32 wide, 48 high
    array = decode_image((DATA / "image_exif_rotated.jpg").read_bytes(), spec)
    assert array.shape == (1, 48, 32, 3)
    # Rotated 90 degrees clockwise: the red square moves to the top-right corner.
    assert array[0, 10, 20, 0] > 180 and array[0, 10, 20, 1] < 80


def test_grayscale_uint8_hwc_and_normalization() -> None:
    gray = decode_image((DATA / "image.png").read_bytes(),
                        ImageInput(name="g", mode="L", size=(32, 48), dtype="uint8", layout="HWC"))
    assert gray.shape == (1, 32, 48, 1) and gray.dtype == np.uint8
    spec = ImageInput(name="n", size=(32, 48), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    normalized = decode_image((DATA / "image.png").read_bytes(), spec)
    assert normalized.min() >= -1.0 and normalized.max() <= 1.0 and normalized.max() > 0.9


@pytest.mark.parametrize("policy", ["resize", "center_crop", "pad"])
def test_size_policies_all_reach_the_declared_size(policy: str) -> None:
    spec = ImageInput(name="img", size=(20, 20), resize=policy)  # type: ignore[arg-type]
    assert decode_image((DATA / "image.png").read_bytes(), spec).shape == (1, 3, 20, 20)


def test_a_batch_of_images_stacks() -> None:
    data = (DATA / "image.png").read_bytes()
    assert decode_image([data, data, data], IMAGE).shape == (3, 3, 32, 48)


@pytest.mark.parametrize(
    ("filename", "error"),
    [
        ("image_truncated.png", InvalidInput),
        ("image_wrong_magic.png", UnsupportedMediaType),
        ("audio.flac", UnsupportedMediaType),
    ],
)
def test_malformed_images_get_their_documented_error(filename: str, error: type[Exception]) -> None:
    with pytest.raises(error) as caught:
        decode_image((DATA / filename).read_bytes(), IMAGE)
    assert caught.value.input == "img"  # type: ignore[attr-defined]


def test_bomb_headers_are_refused_before_decoding() -> None:
    with pytest.raises(InputTooLarge, match="10000000000 pixels") as caught:
        decode_image((DATA / "image_bomb_header.png").read_bytes(), IMAGE)
    assert caught.value.input == "img"
    # Under Pillow's own bomb limits: seedserve's max_pixels refuses it from the header.
    with pytest.raises(InputTooLarge, match="8000x8000 pixels exceeds the limit of 40,000,000"):
        decode_image((DATA / "image_bomb_8k.png").read_bytes(), IMAGE)
    small_limit = ImageInput(name="img", max_pixels=100)
    with pytest.raises(InputTooLarge, match="48x32 pixels exceeds the limit of 100"):
        decode_image((DATA / "image.png").read_bytes(), small_limit)


def test_bytes_limit_is_checked_before_base64_decoding() -> None:
    spec = ImageInput(name="img", max_bytes=100)
    with pytest.raises(InputTooLarge, match="exceeds the limit of 100"):
        decode_image({"b64": "A" * 1000}, spec)
    with pytest.raises(InvalidInput, match="not valid base64"):
        decode_image({"b64": "!!!!"}, IMAGE)


AUDIO = AudioInput(name="clip", sample_rate=16000)


@pytest.mark.parametrize(
    "filename",
    ["speech.wav", "audio_8bit.wav", "audio_24bit.wav", "audio_32bit.wav", "audio_float.wav", "audio_stereo.wav",
     "audio.flac", "audio.ogg", "audio.mp3"],
)
def test_every_audio_format_decodes_to_mono_float_at_the_declared_rate(filename: str) -> None:
    reference = decode_audio((DATA / "speech.wav").read_bytes(), AUDIO)
    array = decode_audio((DATA / filename).read_bytes(), AUDIO)
    assert array.dtype == np.float32 and array.ndim == 2 and array.shape[0] == 1
    # Same speech, resampled from 22.05 kHz: about the same length and loudness.
    assert abs(array.shape[1] - reference.shape[1]) < 0.1 * reference.shape[1]
    assert 0.5 < np.abs(array).max() / np.abs(reference).max() < 2.0


def test_stereo_is_kept_when_declared_and_clips_are_padded_to_a_fixed_length() -> None:
    spec = AudioInput(name="clip", sample_rate=8000, channels=2, length_s=0.5)
    stereo = decode_audio([(DATA / "audio_stereo.wav").read_bytes(), (DATA / "speech.wav").read_bytes()], spec)
    assert stereo.shape == (2, 2, 4000)


def test_duration_limit_is_checked_from_the_header() -> None:
    with pytest.raises(InputTooLarge, match=r"s of audio exceeds the limit of 0.5 s"):
        decode_audio((DATA / "speech.wav").read_bytes(), AudioInput(name="clip", max_seconds=0.5))


@pytest.mark.parametrize(
    ("filename", "error"),
    [("audio_truncated.wav", InvalidInput), ("audio_wrong_magic.wav", InvalidInput), ("image.png", InvalidInput)],
)
def test_malformed_audio_gets_a_4xx_error_naming_the_input(filename: str, error: type[Exception]) -> None:
    with pytest.raises(error) as caught:
        decode_audio((DATA / filename).read_bytes(), AUDIO)
    assert caught.value.input == "clip"  # type: ignore[attr-defined]

