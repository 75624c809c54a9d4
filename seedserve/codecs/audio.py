"""Audio: WAV (8/16/24/32-bit integer and float), FLAC, OGG/Vorbis, MP3 ->
float32 at the declared sample rate, mono or the declared channels, and
optionally librosa's features of that waveform (mel, log-mel, MFCC).

The header (frames, rate, channels) is read first: the duration limit is
checked before any sample is decoded. soundfile, soxr and librosa are
imported when a clip is decoded, not with this module: the SDK imports the
codecs package and must not need them.
"""

from __future__ import annotations

import io
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from seedserve.codecs._common import InputBase, as_batch, media_bytes
from seedserve.codecs.kind import Form, Kind
from seedserve.errors import InputTooLarge, InvalidInput, UnsupportedMediaType

__all__ = ["AudioInput", "KIND", "audio_features", "decode_audio", "sample_audio"]


#: The most feature values (channels x rows x frames) one clip may become.
MAX_FEATURE_VALUES = 2**26

Features = Literal["waveform", "mel", "log_mel", "mfcc"]


class AudioInput(InputBase):
    """A sound file per item; the model gets ``[N, T]`` (mono) or ``[N, C, T]``.

    Clips of a batch are padded with zeros to the longest, or padded or cut to
    ``length_s`` when it is set. ``features`` other than ``waveform`` turn each
    padded clip into librosa's features, with librosa's defaults: ``mel``
    (``librosa.feature.melspectrogram``, power), ``log_mel`` (that through
    ``librosa.power_to_db``) or ``mfcc`` (``librosa.feature.mfcc``); the model
    gets ``[N, rows, frames]`` (mono) or ``[N, C, rows, frames]``, rows being
    ``n_mels`` or ``n_mfcc``. Decibels are relative to each clip, never to the
    batch, so a clip's features do not depend on the clips beside it.
    """

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    kind: Literal["audio"] = "audio"
    sample_rate: int = Field(default=16000, ge=1000, le=384000)
    channels: int = Field(default=1, ge=1, le=8)
    length_s: float | None = Field(default=None, gt=0, le=3600)
    max_seconds: float = Field(default=30.0, gt=0, le=3600)
    max_bytes: int = Field(default=50 * 2**20, gt=0, le=1024 * 2**20)
    max_batch: int = Field(default=32, ge=1, le=1024)
    features: Features = "waveform"
    n_fft: int = Field(default=2048, ge=16, le=16384)
    hop_length: int = Field(default=512, ge=16, le=16384)
    n_mels: int = Field(default=128, ge=1, le=512)
    n_mfcc: int = Field(default=20, ge=1, le=512)

    @model_validator(mode="after")
    def _features_fit(self) -> AudioInput:
        if self.features == "waveform":
            return self
        if self.hop_length > self.n_fft:
            raise ValueError(f"hop_length ({self.hop_length}) exceeds n_fft ({self.n_fft}); frames would skip samples")
        if self.n_mels > self.n_fft // 2 + 1:
            raise ValueError(
                f"n_mels ({self.n_mels}) exceeds the {self.n_fft // 2 + 1} frequency bins of n_fft ({self.n_fft}); "
                "lower n_mels or raise n_fft"
            )
        if self.features == "mfcc" and self.n_mfcc > self.n_mels:
            raise ValueError(f"n_mfcc ({self.n_mfcc}) exceeds n_mels ({self.n_mels})")
        seconds = self.length_s or self.max_seconds
        values = self.channels * self.rows * (int(seconds * self.sample_rate) // self.hop_length + 1)
        if values > MAX_FEATURE_VALUES:
            raise ValueError(
                f"a clip of {seconds:g} s would become {values:,} feature values, over the limit of "
                f"{MAX_FEATURE_VALUES:,}; raise hop_length or lower max_seconds, length_s or n_mels"
            )
        return self

    @property
    def rows(self) -> int:
        """Rows of one frame of features: ``n_mfcc`` for MFCC, else ``n_mels``."""
        return self.n_mfcc if self.features == "mfcc" else self.n_mels


def decode_audio(value: Any, spec: AudioInput) -> np.ndarray:
    items = as_batch(value, spec.name, spec.max_batch, (bytes, bytearray, memoryview, dict))
    clips = [_decode_one(media_bytes(item, spec.name, spec.max_bytes), spec) for item in items]
    length = round(spec.length_s * spec.sample_rate) if spec.length_s else max(c.shape[-1] for c in clips)
    batch = np.zeros((len(clips), spec.channels, length), dtype=np.float32)
    for i, clip in enumerate(clips):
        n = min(length, clip.shape[-1])
        batch[i, :, :n] = clip[:, :n]
    return _shaped(batch, spec)


def _shaped(batch: np.ndarray, spec: AudioInput) -> np.ndarray:
    """``[N, C, T]`` waveforms as the model takes them: features, and mono without its channel axis."""
    if spec.features != "waveform":
        batch = np.stack([audio_features(clip, spec) for clip in batch])  # [N, C, rows, frames]
    return batch[:, 0] if spec.channels == 1 else batch


def audio_features(clip: np.ndarray, spec: AudioInput) -> np.ndarray:
    """librosa's ``spec.features`` of one clip ``[..., T]`` -> ``[..., rows, frames]`` float32."""
    import librosa

    mel = librosa.feature.melspectrogram(
        y=clip, sr=spec.sample_rate, n_fft=spec.n_fft, hop_length=spec.hop_length, n_mels=spec.n_mels
    )
    if spec.features == "log_mel":
        mel = librosa.power_to_db(mel)
    elif spec.features == "mfcc":
        mel = librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=spec.n_mfcc)
    return mel.astype(np.float32, copy=False)


def _decode_one(data: bytes, spec: AudioInput) -> np.ndarray:
    import soundfile as sf
    import soxr

    name = spec.name
    if data[:4] == b"RIFF" and int.from_bytes(data[4:8], "little") + 8 > len(data):
        # libsndfile would quietly decode the part that arrived.
        raise InvalidInput(
            f"input {name!r}: the WAV file is truncated ({len(data):,} of "
            f"{int.from_bytes(data[4:8], 'little') + 8:,} bytes)",
            input=name,
        )
    try:
        with sf.SoundFile(io.BytesIO(data)) as sound:
            seconds = sound.frames / sound.samplerate
            if seconds > spec.max_seconds:
                raise InputTooLarge(
                    f"input {name!r}: {seconds:.1f} s of audio exceeds the limit of {spec.max_seconds:g} s; "
                    "send a shorter clip or raise max_seconds in the manifest",
                    input=name, limit=spec.max_seconds, got=round(seconds, 3),
                )
            rate = sound.samplerate
            samples = sound.read(dtype="float32", always_2d=True)  # [T, C]
    except sf.LibsndfileError as exc:
        if "format" in str(exc).lower() or "recogni" in str(exc).lower():
            raise UnsupportedMediaType(
                f"input {name!r}: not an audio file in a supported format (WAV, FLAC, OGG, MP3)", input=name
            ) from exc
        raise InvalidInput(f"input {name!r}: the audio is truncated or corrupt ({exc})", input=name) from exc
    except (RuntimeError, ValueError, EOFError) as exc:
        raise InvalidInput(f"input {name!r}: the audio is truncated or corrupt ({exc})", input=name) from exc
    if samples.shape[0] == 0:
        raise InvalidInput(f"input {name!r}: the audio holds no samples", input=name)
    if not np.isfinite(samples).all():
        raise InvalidInput(f"input {name!r}: the audio holds NaN or Inf samples", input=name)
    samples = _channels(samples, spec)
    if rate != spec.sample_rate:
        samples = soxr.resample(samples, rate, spec.sample_rate, quality="HQ").astype(np.float32, copy=False)
    return np.ascontiguousarray(samples.T)  # [C, T]


def _channels(samples: np.ndarray, spec: AudioInput) -> np.ndarray:
    have = samples.shape[1]
    if spec.channels == have:
        return samples
    if spec.channels == 1:
        mono: np.ndarray = samples.mean(axis=1, keepdims=True)
        return mono
    if have == 1:
        return np.repeat(samples, spec.channels, axis=1)
    raise InvalidInput(
        f"input {spec.name!r}: {have} channels cannot become the declared {spec.channels}; "
        f"send mono or {spec.channels}",
        input=spec.name,
    )


def sample_audio(spec: AudioInput, batch: int = 1) -> np.ndarray:
    """``batch`` silent clips of ``length_s`` (or 1 s), as :func:`decode_audio` gives them."""
    length = round((spec.length_s or 1.0) * spec.sample_rate)
    return _shaped(np.zeros((batch, spec.channels, length), dtype=np.float32), spec)


def _note(spec: AudioInput) -> str:
    return "" if spec.features == "waveform" else f", sent as a file, given to the model as {spec.features}"


KIND = Kind(
    name="audio", spec=AudioInput, decoder="seedserve.codecs.audio:decode_audio",
    sampler="seedserve.codecs.audio:sample_audio", wire="file", doc="a file as {b64, mime}",
    form=Form("file", accept="audio/*", file="clip.wav", note=_note),
    mimes={".wav": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg", ".mp3": "audio/mpeg"},
)
