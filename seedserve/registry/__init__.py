"""The model registry shared by the manager and the master: Mongo documents,
the store over pymongo, and secret-key hashing."""

from seedserve.registry.documents import ArtifactDoc, KeyDoc, ModelDoc, VersionDoc, default_version, version_id
from seedserve.registry.key_hashes import hash_key, key_matches, new_key
from seedserve.registry.store import ModelStore, connect

__all__ = [
    "ArtifactDoc",
    "KeyDoc",
    "ModelDoc",
    "VersionDoc",
    "default_version",
    "version_id",
    "ModelStore",
    "connect",
    "hash_key",
    "key_matches",
    "new_key",
]
