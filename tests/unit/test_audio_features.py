"""Audio features: the codec's mel, log-mel and MFCC equal librosa's on the
same file, at every rate and format, and fit batching, samples and metadata."""

from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf

from seedserve.codecs import AudioInput, parse_manifest, sample_inputs
from seedserve.codecs.audio import decode_audio
from seedserve.codecs.batching import merge, signature
from seedserve.codecs.registry import kinds_of
from seedserve.errors import InputTooLarge, InvalidManifest

RATES = [8000, 16000, 44100]
FORMATS = {"wav": "PCM_16", "flac": "PCM_16", "mp3": "MPEG_LAYER_III"}
TARGET = 16000
PARAMS = {"n_fft": 512, "hop_length": 128, "n_mels": 40}


def _signal(rate: int, seconds: float, channels: int = 1) -> np.ndarray:
    """A chirp with a little noise: energy across the mel bands."""
    t = np.arange(int(rate * seconds)) / rate
    rng = np.random.default_rng(rate)
    tone = 0.5 * np.sin(2 * np.pi * (200 + 1500 * t) * t) + 0.05 * rng.standard_normal(t.size)
    wave = np.stack([tone * (0.5 + 0.5 * c) for c in range(channels)], axis=1)
    return wave.astype(np.float32)


def _file(tmp_path: Path, rate: int, fmt: str, seconds: float = 0.7, channels: int = 1) -> Path:
    path = tmp_path / f"clip_{rate}_{channels}.{fmt}"
    sf.write(path, _signal(rate, seconds, channels), rate, format=fmt.upper(), subtype=FORMATS[fmt])
    return path


def _reference(path: Path, features: str, length: int | None = None, mono: bool = True) -> np.ndarray:
    y, _ = librosa.load(path, sr=TARGET, mono=mono)
    if length is not None:
        y = librosa.util.fix_length(y, size=length)
    mel = librosa.feature.melspectrogram(y=y, sr=TARGET, **PARAMS)
    if features == "log_mel":
        return librosa.power_to_db(mel)
    if features == "mfcc":
        return librosa.feature.mfcc(y=y, sr=TARGET, n_mfcc=13, **PARAMS)
    return mel


def _spec(features: str, **extra: object) -> AudioInput:
    return AudioInput(name="clip", sample_rate=TARGET, features=features, n_mfcc=13, **PARAMS, **extra)  # type: ignore[arg-type]


def _assert_close(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    assert got.dtype == np.float32
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()


@pytest.mark.parametrize("features", ["mel", "log_mel", "mfcc"])
@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("rate", RATES)
def test_features_equal_librosa_load_then_librosa_feature(tmp_path: Path, rate: int, fmt: str, features: str) -> None:
    path = _file(tmp_path, rate, fmt)
    got = decode_audio(path.read_bytes(), _spec(features))
    _assert_close(got[0], _reference(path, features))


@pytest.mark.parametrize("fmt", ["wav", "mp3"])
def test_features_of_a_clip_cut_or_padded_to_length_s_equal_librosa_on_the_same_length(
    tmp_path: Path, fmt: str
) -> None:
    long, short = _file(tmp_path, 44100, fmt, seconds=0.9), _file(tmp_path, 8000, fmt, seconds=0.3)
    spec = _spec("mfcc", length_s=0.5)
    got = decode_audio([long.read_bytes(), short.read_bytes()], spec)
    length = round(0.5 * TARGET)
    _assert_close(got[0], _reference(long, "mfcc", length))
    _assert_close(got[1], _reference(short, "mfcc", length))


def test_shorter_clips_of_a_query_are_padded_to_the_longest_before_their_features(tmp_path: Path) -> None:
    long, short = _file(tmp_path, 16000, "flac", seconds=0.8), _file(tmp_path, 8000, "wav", seconds=0.4)
    got = decode_audio([long.read_bytes(), short.read_bytes()], _spec("log_mel"))
    length = librosa.load(long, sr=TARGET)[0].size
    _assert_close(got[1], _reference(short, "log_mel", length))


def test_a_clips_decibels_do_not_depend_on_the_clips_beside_it(tmp_path: Path) -> None:
    loud, quiet = _file(tmp_path, 16000, "wav"), tmp_path / "quiet.wav"
    sf.write(quiet, _signal(16000, 0.7) * 1e-4, 16000)
    alone = decode_audio(quiet.read_bytes(), _spec("mfcc"))
    together = decode_audio([loud.read_bytes(), quiet.read_bytes()], _spec("mfcc"))
    np.testing.assert_array_equal(together[1], alone[0])


def test_stereo_features_keep_the_channel_axis_as_the_waveform_does(tmp_path: Path) -> None:
    path = _file(tmp_path, 44100, "wav", channels=2)
    waveform = decode_audio(path.read_bytes(), AudioInput(name="clip", sample_rate=TARGET, channels=2))
    got = decode_audio(path.read_bytes(), _spec("mel", channels=2))
    assert waveform.shape[:2] == got.shape[:2] == (1, 2)
    _assert_close(got[0], _reference(path, "mel", mono=False))


@pytest.mark.parametrize("features", ["waveform", "mel", "log_mel", "mfcc"])
def test_samples_have_the_shape_of_decoded_clips_and_merge_with_them(tmp_path: Path, features: str) -> None:
    manifest = parse_manifest({
        "name": "m", "outputs": [{"name": "y"}],
        "inputs": [{"name": "clip", "kind": "audio", "features": features, "length_s": 1.0, **PARAMS}],
    })
    sample = sample_inputs(manifest, 3)["clip"]
    decoded = decode_audio(_file(tmp_path, 8000, "wav").read_bytes(), manifest.inputs[0])  # type: ignore[arg-type]
    assert sample.shape[1:] == decoded.shape[1:] and sample.shape[0] == 3
    kinds = kinds_of(manifest.inputs)
    assert signature({"clip": sample}, kinds) == signature({"clip": decoded}, kinds)
    assert merge([{"clip": sample}, {"clip": decoded}], kinds)["clip"].shape[0] == 4


def test_features_are_computed_only_after_the_duration_limit(tmp_path: Path) -> None:
    path = _file(tmp_path, 8000, "wav", seconds=2.0)
    with pytest.raises(InputTooLarge, match="max_seconds"):
        decode_audio(path.read_bytes(), _spec("mfcc", max_seconds=1.0))


@pytest.mark.parametrize(("option", "field"), [
    ({"n_fft": 100_000}, "n_fft"),
    ({"n_mels": 0}, "n_mels"),
    ({"hop_length": 4}, "hop_length"),
    ({"features": "spectrogram"}, "features"),
    ({"n_fft": 256, "hop_length": 512}, "hop_length (512) exceeds n_fft (256)"),
    ({"n_fft": 128, "hop_length": 64, "n_mels": 128}, "n_mels (128) exceeds the 65 frequency bins"),
    ({"features": "mfcc", "n_mels": 20, "n_mfcc": 40}, "n_mfcc (40) exceeds n_mels (20)"),
    ({"hop_length": 16, "max_seconds": 3600, "sample_rate": 384000}, "feature values, over the limit"),
])
def test_bad_feature_options_are_refused_naming_the_field(option: dict[str, object], field: str) -> None:
    spec = {"name": "clip", "kind": "audio", "features": "mel", **option}
    with pytest.raises(InvalidManifest, match=field.replace("(", r"\(").replace(")", r"\)")):
        parse_manifest({"name": "m", "inputs": [spec], "outputs": [{"name": "y"}]})


def test_open_inference_metadata_of_a_feature_input_is_still_a_file() -> None:
    from seedserve.deployments._v2_rest import oip_tensor_metadata

    meta = oip_tensor_metadata(_spec("mfcc"))
    assert meta["datatype"] == "BYTES" and meta["parameters"]["seedserve_kind"] == "audio"
