"""Name -> class maps whose members register themselves when their module is imported.

Two of them: the venue adapters (``exporter/feeds/registry.py``, ``kind: binance`` in the
config) and the simulator dialects (``exporter/simulator/base.py``, ``--venue binance``). Member
modules are imported lazily on the first lookup, so ``import exporter`` stays cheap and a member
module that does not exist cannot stop the others from loading.
"""

from __future__ import annotations

import importlib
from typing import Generic, Sequence, TypeVar

T = TypeVar("T", bound=type)


class Registry(Generic[T]):
    """Classes by the value of their ``key`` attribute, from the modules ``package.<modules>``."""

    def __init__(self, package: str, modules: Sequence[str], key: str, what: str) -> None:
        self.package = package
        self.modules = tuple(modules)
        self.key = key
        self.what = what  # for the error message: "feed kind", "dialect"
        self._members: dict[str, T] = {}
        self._loaded = False

    def register(self, cls: T) -> T:
        """Class decorator: add ``cls`` under its ``key`` attribute."""
        name = getattr(cls, self.key)
        if name in self._members and self._members[name] is not cls:
            raise ValueError(f"{self.what} {name!r} registered twice")
        self._members[name] = cls
        return cls

    def get(self, name: str) -> T | None:
        self._load()
        return self._members.get(name)

    def names(self) -> list[str]:
        self._load()
        return sorted(self._members)

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for module in self.modules:
            qualified = f"{self.package}.{module}"
            try:
                importlib.import_module(qualified)
            except ModuleNotFoundError as exc:
                if exc.name != qualified:
                    raise  # the module exists but something it imports is missing: say so
