"""An image classifier: a small CNN on 3x32x32 images, queried with a PIL image.

    .venv/bin/python examples/image_classifier.py   (with `seedserve up` running)
"""

from __future__ import annotations

import torch
from _common import register_and_query
from PIL import Image, ImageDraw

model = torch.nn.Sequential(
    torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(4),
    torch.nn.Flatten(), torch.nn.Linear(8 * 16, 10),
).eval()
manifest = {
    "name": "image-classifier",
    "inputs": [{"name": "image", "kind": "image", "size": [32, 32], "resize": "center_crop",
                "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}],
    "outputs": [{"name": "logits", "top_k": 3, "labels": [
        "apple", "ball", "cat", "dog", "egg", "fish", "goat", "hat", "ice", "jar"]}],
}
picture = Image.new("RGB", (640, 480), "white")
ImageDraw.Draw(picture).ellipse([200, 100, 440, 380], fill="orange")

if __name__ == "__main__":
    out = register_and_query(model, manifest, {"image": picture})
    assert len(out["logits"][0]) == 10
    best = out["logits_top_k"][0]
    assert len(best) == 3 and best[0]["score"] >= best[1]["score"] >= best[2]["score"]
    print("top 3:", best)
