"""Audio: WAV (8/16/24/32-bit integer and float), FLAC, OGG/Vorbis, MP3 ->
float32 at the declared sample rate, mono or the declared channels.

The header (frames, rate, channels) is read first: the duration limit is
checked before any sample is decoded.
"""

from __future__ import annotations

import io
from typing import Any, Literal

import numpy as np
import soundfile as sf
import soxr
from pydantic import Field

from seedserve.codecs._common import Spec, as_batch, media_bytes
from seedserve.errors import InputTooLarge, InvalidInput, UnsupportedMediaType

__all__ = ["AudioInput", "decode_audio", "sample_audio"]


class AudioInput(Spec):
    """A sound file per item; the model gets ``[N, T]`` (mono) or ``[N, C, T]``.

    Clips of a batch are padded with zeros to the longest, or padded or cut to
    ``length_s`` when it is set.
    """

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    kind: Literal["audio"] = "audio"
    sample_rate: int = Field(default=16000, ge=1000, le=384000)
    channels: int = Field(default=1, ge=1, le=8)
    length_s: float | None = Field(default=None, gt=0, le=3600)
    max_seconds: float = Field(default=30.0, gt=0, le=3600)
    max_bytes: int = Field(default=50 * 2**20, gt=0, le=1024 * 2**20)
    max_batch: int = Field(default=32, ge=1, le=1024)


def decode_audio(value: Any, spec: AudioInput) -> np.ndarray:
    items = as_batch(value, spec.name, spec.max_batch, (bytes, bytearray, memoryview, dict))
    clips = [_decode_one(media_bytes(item, spec.name, spec.max_bytes), spec) for item in items]
    length = round(spec.length_s * spec.sample_rate) if spec.length_s else max(c.shape[-1] for c in clips)
    batch = np.zeros((len(clips), spec.channels, length), dtype=np.float32)
    for i, clip in enumerate(clips):
        n = min(length, clip.shape[-1])
        batch[i, :, :n] = clip[:, :n]
    return batch[:, 0, :] if spec.channels == 1 else batch


def _decode_one(data: bytes, spec: AudioInput) -> np.ndarray:
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
        return samples.mean(axis=1, keepdims=True)
    if have == 1:
        return np.repeat(samples, spec.channels, axis=1)
    raise InvalidInput(
        f"input {spec.name!r}: {have} channels cannot become the declared {spec.channels}; send mono or {spec.channels}",
        input=spec.name,
    )


def sample_audio(spec: AudioInput, batch: int = 1) -> np.ndarray:
    length = round((spec.length_s or 1.0) * spec.sample_rate)
    shape = (batch, length) if spec.channels == 1 else (batch, spec.channels, length)
    return np.zeros(shape, dtype=np.float32)
