"""The venue registry: ``kind`` name -> adapter class (node_exporter's collector map, in Python).

Venue modules are imported lazily on first lookup so ``import exporter`` stays cheap and a broken
optional venue cannot stop the others from loading.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from exporter.feeds.base import Adapter

# Modules that register a venue when imported; a new venue adds its module name here.
VENUE_MODULES = ("polygon", "binance", "bybit", "generic", "trading")

_ADAPTERS: dict[str, type["Adapter"]] = {}
_loaded = False

A = TypeVar("A", bound="type[Adapter]")


def register(cls: A) -> A:
    """Class decorator: make ``cls`` selectable as ``kind: <cls.kind>``."""
    if cls.kind in _ADAPTERS and _ADAPTERS[cls.kind] is not cls:
        raise ValueError(f"feed kind {cls.kind!r} registered twice")
    _ADAPTERS[cls.kind] = cls
    return cls


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in VENUE_MODULES:
        try:
            importlib.import_module(f"exporter.feeds.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"exporter.feeds.{module}":
                raise  # a venue module exists but something it imports is missing: say so


def get(kind: str) -> type["Adapter"] | None:
    _load()
    return _ADAPTERS.get(kind)


def kinds() -> list[str]:
    _load()
    return sorted(_ADAPTERS)
