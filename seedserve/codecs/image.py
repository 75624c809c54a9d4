"""Images: PNG, JPEG (progressive, CMYK, EXIF orientation), WebP, BMP, GIF
(first frame), TIFF -> the declared mode, size, layout and dtype.

The header is parsed first (``Image.open`` is lazy): the format and the pixel
count are checked before a single pixel is decoded, so decompression bombs are
refused, never decoded. Pillow is imported when an image is decoded, not
with this module: reading the kinds (the dashboard, the SDK) must not need it.
"""

from __future__ import annotations

import io
import warnings
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field, model_validator

from seedserve.codecs._common import InputBase, as_batch, media_bytes
from seedserve.codecs.kind import Form, Kind
from seedserve.errors import InputTooLarge, InvalidInput, UnsupportedMediaType

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["ImageInput", "decode_image", "sample_image", "FORMATS", "KIND"]

FORMATS = frozenset({"PNG", "JPEG", "MPO", "WEBP", "BMP", "GIF", "TIFF"})
_ORIENTATION = 0x0112


class ImageInput(InputBase):
    """An image file per item; the model gets ``[N, C, H, W]`` (or ``[N, H, W, C]``)."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    kind: Literal["image"] = "image"
    mode: Literal["RGB", "L"] = "RGB"
    size: tuple[int, int] = Field(default=(224, 224), description="(height, width) the model takes")
    resize: Literal["resize", "center_crop", "pad"] = "resize"
    layout: Literal["CHW", "HWC"] = "CHW"
    dtype: Literal["float32", "uint8"] = "float32"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    max_bytes: int = Field(default=20 * 2**20, gt=0, le=512 * 2**20)
    max_pixels: int = Field(default=40_000_000, gt=0, le=500_000_000)
    max_batch: int = Field(default=64, ge=1, le=4096)

    @model_validator(mode="after")
    def _normalization_fits_the_mode(self) -> ImageInput:
        channels = 3 if self.mode == "RGB" else 1
        for field in ("mean", "std"):
            values = getattr(self, field)
            if values is not None and len(values) != channels:
                raise ValueError(f"{field} needs {channels} value(s) for mode {self.mode}, got {list(values)}")
        if self.std is not None and any(v <= 0 for v in self.std):
            raise ValueError(f"std must be positive, got {list(self.std)}")
        if (self.mean is not None or self.std is not None) and self.dtype != "float32":
            raise ValueError("mean/std normalization needs dtype float32")
        if min(self.size) < 1 or max(self.size) > 16384:
            raise ValueError(f"size must be within 1..16384, got {list(self.size)}")
        return self

    @property
    def channels(self) -> int:
        return 3 if self.mode == "RGB" else 1


def decode_image(value: Any, spec: ImageInput) -> np.ndarray:
    """One image or a list of images -> a batch array."""
    items = as_batch(value, spec.name, spec.max_batch, (bytes, bytearray, memoryview, dict))
    return np.stack([_to_array(_open(media_bytes(item, spec.name, spec.max_bytes), spec), spec) for item in items])


def _open(data: bytes, spec: ImageInput) -> Image.Image:
    from PIL import Image, ImageOps, UnidentifiedImageError

    name = spec.name
    image: Image.Image
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputTooLarge(
            f"input {name!r}: the image header claims more pixels than Pillow will decode safely ({exc}); "
            f"the limit here is {spec.max_pixels:,} pixels",
            input=name, limit=spec.max_pixels,
        ) from exc
    except UnidentifiedImageError as exc:
        raise UnsupportedMediaType(
            f"input {name!r}: not an image in a supported format ({', '.join(sorted(FORMATS))})", input=name
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidInput(f"input {name!r}: the image header is unreadable ({exc})", input=name) from exc
    if image.format not in FORMATS:
        raise UnsupportedMediaType(f"input {name!r}: {image.format} images are not accepted; use PNG or JPEG",
                                   input=name)
    width, height = image.size
    if width * height > spec.max_pixels:
        raise InputTooLarge(
            f"input {name!r}: {width}x{height} pixels exceeds the limit of {spec.max_pixels:,}; "
            "resize it or raise max_pixels in the manifest",
            input=name, limit=spec.max_pixels, got=width * height,
        )
    try:
        if image.format == "JPEG":
            # Let libjpeg decode at a reduced scale when the target is much smaller.
            image.draft(spec.mode, (spec.size[1], spec.size[0]))
        image.load()  # GIF and TIFF: the first frame
        if image.getexif().get(_ORIENTATION, 1) != 1:
            image = ImageOps.exif_transpose(image)
        return image.convert(spec.mode) if image.mode != spec.mode else image
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidInput(f"input {name!r}: the image is truncated or corrupt ({exc})", input=name) from exc


def _to_array(image: Image.Image, spec: ImageInput) -> np.ndarray:
    from PIL import Image, ImageOps

    height, width = spec.size
    if image.size != (width, height):
        if spec.resize == "center_crop":
            image = ImageOps.fit(image, (width, height), Image.Resampling.BILINEAR)
        elif spec.resize == "pad":
            image = ImageOps.pad(image, (width, height), Image.Resampling.BILINEAR)
        else:
            image = image.resize((width, height), Image.Resampling.BILINEAR)
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[:, :, None]
    if spec.dtype == "float32":
        array = array.astype(np.float32) * np.float32(1 / 255)
        if spec.mean is not None:
            array -= np.asarray(spec.mean, np.float32)
        if spec.std is not None:
            array /= np.asarray(spec.std, np.float32)
    return np.ascontiguousarray(array.transpose(2, 0, 1)) if spec.layout == "CHW" else array


def sample_image(spec: ImageInput, batch: int = 1) -> np.ndarray:
    h, w = spec.size
    shape = (batch, spec.channels, h, w) if spec.layout == "CHW" else (batch, h, w, spec.channels)
    return np.zeros(shape, dtype=spec.dtype)


KIND = Kind(
    name="image", spec=ImageInput, decoder="seedserve.codecs.image:decode_image",
    sampler="seedserve.codecs.image:sample_image", wire="file", doc="a file as {b64, mime}",
    form=Form("file", accept="image/*", file="image.png"),
    mimes={".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
           ".gif": "image/gif", ".bmp": "image/bmp", ".tif": "image/tiff", ".tiff": "image/tiff"},
)
