"""Text: a string or a list of strings, with a length limit. With a
tokenizer the model gets int64 token ids ``[N, max_tokens]`` (0 pads); without
one, the strings themselves (for models that take ``List[str]``).

Tokenizers: ``utf8_bytes`` (each byte + 1, so 0 stays padding) or
``vocabulary`` (lower-cased whitespace words -> index + 2; 1 is unknown).
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from seedserve.codecs._common import InputBase, as_batch
from seedserve.codecs.kind import Form, Kind
from seedserve.errors import InputTooLarge, InvalidInput

__all__ = ["TextInput", "decode_text", "sample_text", "KIND"]

PAD, UNKNOWN = 0, 1


class TextInput(InputBase):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    kind: Literal["text"] = "text"
    max_length: int = Field(default=10_000, ge=1, le=10_000_000, description="characters per string")
    tokenizer: Literal["none", "utf8_bytes", "vocabulary"] = "none"
    vocabulary: list[str] | None = Field(default=None, max_length=1_000_000)
    max_tokens: int = Field(default=128, ge=1, le=100_000)
    lowercase: bool = True
    max_batch: int = Field(default=256, ge=1, le=100_000)

    @model_validator(mode="after")
    def _vocabulary_goes_with_its_tokenizer(self) -> TextInput:
        if (self.tokenizer == "vocabulary") != (self.vocabulary is not None):
            raise ValueError("a vocabulary goes with tokenizer 'vocabulary' (and only with it)")
        return self

    @cached_property
    def word_ids(self) -> dict[str, int]:
        """Word -> token id, built once per spec (specs are immutable)."""
        return {word: i + 2 for i, word in enumerate(self.vocabulary or [])}


def decode_text(value: Any, spec: TextInput) -> np.ndarray:
    texts = as_batch(value, spec.name, spec.max_batch, str)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidInput(f"input {spec.name!r}: item {i} is {type(text).__name__}, not a string", input=spec.name)
        if len(text) > spec.max_length:
            raise InputTooLarge(
                f"input {spec.name!r}: item {i} has {len(text):,} characters, over the limit of {spec.max_length:,}; "
                "send shorter text or raise max_length",
                input=spec.name, limit=spec.max_length, got=len(text),
            )
    if spec.tokenizer == "utf8_bytes":
        return _utf8_ids(texts, spec)
    if spec.tokenizer == "none":
        _encodable("".join(texts), spec)
        return np.array(texts, dtype=object)
    ids = np.full((len(texts), spec.max_tokens), PAD, dtype=np.int64)
    index = spec.word_ids
    for i, text in enumerate(texts):
        words = (text.lower() if spec.lowercase else text).split()[: spec.max_tokens]
        ids[i, : len(words)] = [index.get(word, UNKNOWN) for word in words]
    return ids


def _utf8_ids(texts: list[str], spec: TextInput) -> np.ndarray:
    """Each UTF-8 byte + 1, cut at max_tokens, 0-padded: one buffer, one cast."""
    width = spec.max_tokens
    # A character is at least one byte, so cutting the string first saves
    # encoding text that would be thrown away.
    encoded = [_encodable(text[:width], spec)[:width] for text in texts]
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    buffer = b"".join(data.ljust(width, b"\0") for data in encoded)
    ids = np.frombuffer(buffer, dtype=np.uint8).reshape(len(texts), width).astype(np.int64)
    ids += 1
    ids[np.arange(width) >= lengths[:, None]] = PAD  # NUL characters stay 1, padding 0
    return ids


def _encodable(text: str, spec: TextInput) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate such as "\ud800" from JSON
        raise InvalidInput(
            f"input {spec.name!r}: text holds an unpaired surrogate (\\u{ord(exc.object[exc.start]):04x}); "
            "send valid Unicode",
            input=spec.name,
        ) from exc


def sample_text(spec: TextInput, batch: int = 1) -> np.ndarray:
    if spec.tokenizer == "none":
        return np.array(["sample"] * batch, dtype=object)
    return np.zeros((batch, spec.max_tokens), dtype=np.int64)


KIND = Kind(
    name="text", spec=TextInput, decoder="seedserve.codecs.text:decode_text",
    sampler="seedserve.codecs.text:sample_text", wire="text", doc="a string or a list of strings",
    form=Form("text", example=lambda spec: "some text"),
)
