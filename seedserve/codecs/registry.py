"""Input kinds by name.

Every kind is a :class:`~seedserve.codecs.kind.Kind`, described in its own
light module and listed here, one line each, in the order of the manifest's
union. The registry is strict: a kind listed twice, or asked for but not
listed, raises; it never falls back to passing raw bytes through.

Reading the registry imports each kind's module, not its decoding libraries
(see :mod:`seedserve.codecs.kind`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Annotated, Any, Union

from pydantic import Discriminator, Tag

from seedserve.codecs.kind import Decoded, Kind, resolve

__all__ = ["Decoded", "Kind", "Registry", "REGISTRY", "codec_for", "kind", "kinds", "kinds_of", "mime_types"]

#: The kinds seedserve serves: ``"module:attribute"`` of each one's :class:`Kind`.
KINDS = (
    "seedserve.codecs.tensor:KIND",
    "seedserve.codecs.image:KIND",
    "seedserve.codecs.audio:KIND",
    "seedserve.codecs.tabular:KIND",
    "seedserve.codecs.text:KIND",
    "seedserve.codecs.graph:KIND",
    "seedserve.codecs.recommender:KIND",
    "seedserve.codecs.point_cloud:KIND",
)


class Registry(Mapping[str, Kind]):
    """Kinds by name, in the order given; a name given twice raises ``ValueError``,
    an unknown one ``LookupError`` naming the known ones (``in`` says whether one is known)."""

    def __init__(self, kinds: Iterable[Kind]) -> None:
        self._kinds: dict[str, Kind] = {}
        for item in kinds:
            if not isinstance(item, Kind):
                raise TypeError(f"{item!r} is not a Kind")
            if item.name in self._kinds:
                raise ValueError(f"input kind {item.name!r} is already registered")
            self._kinds[item.name] = item

    def __getitem__(self, name: str) -> Kind:
        try:
            return self._kinds[name]
        except KeyError:
            raise LookupError(f"no codec for input kind {name!r}; known kinds: {sorted(self._kinds)}") from None

    # Mapping's own __contains__ and get try self[name] and catch only KeyError.
    def __contains__(self, name: object) -> bool:
        return name in self._kinds

    def get(self, name: str, default: Any = None) -> Any:
        return self._kinds.get(name, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._kinds)

    def __len__(self) -> int:
        return len(self._kinds)

    def input_union(self) -> Any:
        """The manifest's union of input specs, told apart by ``kind`` (default ``tensor``)."""
        members = tuple(Annotated[k.spec, Tag(k.name)] for k in self._kinds.values())
        return Annotated[Union[members], Discriminator(_kind_of)]  # noqa: UP007 (a runtime tuple of members)

    def mime_types(self) -> dict[str, str]:
        """File suffix -> media type, over every kind; two kinds that disagree raise ``ValueError``."""
        table: dict[str, str] = {}
        for item in self._kinds.values():
            for suffix, mime in item.mimes.items():
                if table.setdefault(suffix, mime) != mime:
                    raise ValueError(f"kind {item.name!r} gives {suffix} the type {mime}, another kind {table[suffix]}")
        return table


def _kind_of(value: Any) -> str:
    """The kind of an input spec; a spec without one is a tensor."""
    if isinstance(value, dict):
        return str(value.get("kind", "tensor"))
    return str(getattr(value, "kind", "tensor"))


#: Every kind seedserve serves.
REGISTRY = Registry(resolve(path) for path in KINDS)


def kind(name: str) -> Kind:
    """The kind called ``name``; raises ``LookupError`` naming the known kinds."""
    return REGISTRY[name]


#: The name the codecs had before kinds held more than their codec.
codec_for = kind


def kinds() -> list[str]:
    """The registered kinds, sorted."""
    return sorted(REGISTRY)


def kinds_of(specs: Iterable[Any]) -> dict[str, Kind]:
    """Input name -> its kind, for a manifest's inputs."""
    return {spec.name: REGISTRY[spec.kind] for spec in specs}


def mime_types() -> dict[str, str]:
    """File suffix -> media type, for every kind's files."""
    return REGISTRY.mime_types()
