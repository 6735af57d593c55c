"""The venue registry: ``kind`` name -> adapter class (node_exporter's collector map, in Python).

Venues are found through the ``feedwatch.venues`` entry-point group (``exporter/plugins.py``):
the built-in ones are declared in ``pyproject.toml``, a venue in another installed package
declares itself the same way, and config selects either with ``kind:``. A module is imported
on its first lookup, so ``import exporter`` stays cheap and a broken optional venue cannot stop
the others from loading. ``register`` adds an adapter in code (tests, embedding).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from exporter.plugins import VENUES

if TYPE_CHECKING:
    from exporter.feeds.base import Adapter


def register(cls: "type[Adapter]") -> "type[Adapter]":
    """Class decorator: make ``cls`` selectable as ``kind: <cls.kind>`` without an entry point."""
    return VENUES.register(cls)


def get(kind: str) -> "type[Adapter] | None":
    return VENUES.get(kind)


def kinds() -> list[str]:
    return VENUES.names()
