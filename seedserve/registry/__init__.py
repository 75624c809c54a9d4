"""The model registry shared by the manager and the master: Mongo documents,
the store over pymongo, and secret-key hashing."""

from seedserve.registry.documents import ArtifactDoc, KeyDoc, ModelDoc
from seedserve.registry.keys import hash_key, key_matches, new_key
from seedserve.registry.store import ModelStore, connect, new_model_doc

__all__ = [
    "ArtifactDoc",
    "KeyDoc",
    "ModelDoc",
    "ModelStore",
    "connect",
    "new_model_doc",
    "hash_key",
    "key_matches",
    "new_key",
]
