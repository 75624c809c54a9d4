"""The names users choose, each pattern written once: models, inputs and worker types.

Plain regular expressions (anchored, for pydantic's ``pattern=`` and for
``re.fullmatch``), so the settings, the manifest, the command line and the
OpenAPI documents all accept and refuse the same names.
"""

from __future__ import annotations

__all__ = ["INPUT_NAME_PATTERN", "MODEL_NAME_PATTERN", "WORKER_TYPE_PATTERN"]

#: A model's name: it is part of URLs (``/models/{name}``) and of Serve application names.
MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
#: An input's name: a key of the query's JSON and a Python identifier (a handler's argument).
INPUT_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
#: A worker type: a Ray resource name (``worker:{type}``) and a key of configs/workers.yaml.
WORKER_TYPE_PATTERN = r"^[a-z0-9][a-z0-9.-]{0,62}$"
