"""An audio classifier: log-energy features of 16 kHz mono audio -> 3 classes,
queried with a WAV file made in memory.

    .venv/bin/python examples/audio_classifier.py   (with `seedserve up` running)
"""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf
import torch
from _common import register_and_query


class FrameEnergy(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = torch.nn.Linear(50, 3)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:  # [N, T] at 16 kHz, 1 s
        frames = audio[:, :16000].reshape(audio.shape[0], 50, 320)
        return self.head(torch.log1p(frames.pow(2).mean(dim=2)))


manifest = {
    "name": "audio-classifier",
    "inputs": [{"name": "audio", "kind": "audio", "sample_rate": 16000, "length_s": 1.0}],
    "outputs": [{"name": "logits"}],
}
t = np.arange(44100) / 44100.0
wav = io.BytesIO()
sf.write(wav, 0.3 * np.sin(2 * np.pi * 440 * t), 44100, format="WAV", subtype="PCM_16")  # resampled to 16 kHz

if __name__ == "__main__":
    out = register_and_query(FrameEnergy().eval(), manifest, {"audio": wav.getvalue()})
    assert len(out["logits"][0]) == 3
