"""Mel and MFCC reach the model over HTTP: a model with two audio inputs,
one declared ``features: mel`` and one ``features: mfcc``, echoes a checksum
and the shape of each array it got; they equal librosa's features of the same
file, computed here."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import librosa
import numpy as np
import pytest
import soundfile as sf
import torch

from seedserve.client import Client, ManagerClient
from seedserve.errors import NotFound
from tests.conftest import System

pytestmark = pytest.mark.integration

DATA = Path(__file__).parent.parent / "data"
NAME = "audio-features"
RATE = 16000
PARAMS = {"n_fft": 512, "hop_length": 160, "n_mels": 40}
MANIFEST = {
    "name": NAME,
    "inputs": [
        {"name": "mel", "kind": "audio", "sample_rate": RATE, "features": "mel", **PARAMS},
        {"name": "mfcc", "kind": "audio", "sample_rate": RATE, "features": "mfcc", "n_mfcc": 13, **PARAMS},
    ],
    "outputs": [{"name": "checksum"}],
}


class Checksum(torch.nn.Module):
    """Per item: the sum, the sum of squares, rows and frames of each input."""

    def forward(self, mel: torch.Tensor, mfcc: torch.Tensor) -> torch.Tensor:
        columns = []
        for x in [mel.to(torch.float64), mfcc.to(torch.float64)]:
            n = x.shape[0]
            columns += [x.sum(dim=(1, 2)), (x * x).sum(dim=(1, 2)),
                        torch.full([n], float(x.shape[1]), dtype=torch.float64),
                        torch.full([n], float(x.shape[2]), dtype=torch.float64)]
        return torch.stack(columns, dim=1)


def _expected(path: Path) -> np.ndarray:
    y, _ = librosa.load(path, sr=RATE)
    mel = librosa.feature.melspectrogram(y=y, sr=RATE, **PARAMS).astype(np.float64)
    mfcc = librosa.feature.mfcc(y=y, sr=RATE, n_mfcc=13, **PARAMS).astype(np.float64)
    return np.array([[a.sum(), (a * a).sum(), a.shape[0], a.shape[1]] for a in (mel, mfcc)]).reshape(1, 8)


@pytest.fixture(scope="module")
def key(system: System, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    artifact = tmp_path_factory.mktemp("audio-features") / "checksum.pt"
    torch.jit.script(Checksum()).save(str(artifact))
    with ManagerClient(system.manager_url, system.admin_token) as manager:
        secret: str = manager.register(artifact, MANIFEST)
        try:
            with Client(system.master_url, secret) as client:
                client.wait_until_ready(NAME, timeout=120)
            yield secret
        finally:  # replicas reserve CPU on the 2-CPU node
            with contextlib.suppress(NotFound):
                manager.delete_model(NAME)


@pytest.fixture
def clip_44k(tmp_path: Path) -> Path:
    t = np.arange(int(44100 * 0.8)) / 44100
    path = tmp_path / "chirp.wav"
    sf.write(path, (0.4 * np.sin(2 * np.pi * (300 + 2000 * t) * t)).astype(np.float32), 44100)
    return path


@pytest.mark.parametrize("clip", ["speech", "chirp"])
def test_mel_and_mfcc_reach_the_model_over_json_and_multipart(
    system: System, key: str, clip_44k: Path, clip: str
) -> None:
    path = DATA / "speech.wav" if clip == "speech" else clip_44k
    data = path.read_bytes()
    wav = {"b64": base64.b64encode(data).decode(), "mime": "audio/wav"}
    url = f"{system.master_url}/models/{NAME}/predict"
    headers = {"Authorization": f"Bearer {key}"}
    # A starting replica answers 503 with Retry-After; the SDK's retries wait for it.
    with Client(system.master_url, key, retries=10) as client:
        over_sdk = np.array(client.predict(NAME, mel=path, mfcc=path, transport="multipart")["checksum"])
    with httpx.Client(timeout=60) as http:
        over_json = http.post(url, json={"mel": wav, "mfcc": wav}, headers=headers)
        over_multipart = http.post(url, headers=headers, files=[
            ("mel", (path.name, data, "audio/wav")), ("mfcc", (path.name, data, "audio/wav"))])
    assert over_json.status_code == over_multipart.status_code == 200, (over_json.text, over_multipart.text)
    expected = _expected(path)
    for got in (np.array(over_json.json()["checksum"]), np.array(over_multipart.json()["checksum"]), over_sdk):
        assert got.shape == (1, 8)
        np.testing.assert_array_equal(got[:, [2, 3, 6, 7]], expected[:, [2, 3, 6, 7]])
        np.testing.assert_allclose(got, expected, rtol=1e-5)
