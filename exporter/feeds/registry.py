"""The venue registry: ``kind`` name -> adapter class (node_exporter's collector map, in Python).

Venue modules are imported lazily on first lookup so ``import exporter`` stays cheap and a broken
optional venue cannot stop the others from loading.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from exporter.plugins import Registry

if TYPE_CHECKING:
    from exporter.feeds.base import Adapter

# Modules that register a venue when imported; a new venue adds its module name here.
VENUE_MODULES = ("polygon", "binance", "bybit", "generic", "trading")

_ADAPTERS: Registry[type[Adapter]] = Registry("exporter.feeds", VENUE_MODULES, key="kind", what="feed kind")

A = TypeVar("A", bound="type[Adapter]")


def register(cls: A) -> A:
    """Class decorator: make ``cls`` selectable as ``kind: <cls.kind>``."""
    return _ADAPTERS.register(cls)


def get(kind: str) -> type["Adapter"] | None:
    return _ADAPTERS.get(kind)


def kinds() -> list[str]:
    return _ADAPTERS.names()
