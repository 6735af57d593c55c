"""Extension points: named members found through entry-point groups, built-ins and plugins alike.

feedwatch's optional parts register with the core instead of the core importing them. Each
extension point is an entry-point group; the package's own members are declared in
``pyproject.toml`` exactly like a third-party plugin's, so a venue shipped in another installed
distribution is found the same way as Binance::

    # the plugin's pyproject.toml
    [project.entry-points."feedwatch.venues"]
    echo = "feedwatch_echo:EchoAdapter"        # then `kind: echo` in a feed's config

    group               member                                        looked up by
    feedwatch.venues    an Adapter subclass (``kind`` = the name)      config ``kind:``, the runner
    feedwatch.sections  ``build(raw, path, errors, environ, feeds)``   the config loader (top-level keys)
    feedwatch.web       ``install(app)``: routes for the HTTP app      ``web.app.create_app``
    feedwatch.dialects  a simulator Dialect (``name`` = the name)      ``feedwatch simulate --venue``

Members are listed without importing them (``names()``, for "unknown kind" messages) and each is
imported on its first lookup, so ``import exporter`` stays cheap and a broken plugin cannot stop
the others from loading: looking it up raises ``PluginError`` naming the entry point and the
cause. Members can also be registered in code (``register``), which wins over an entry point of
the same name (tests, embedding).
"""

from __future__ import annotations

from importlib import metadata
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class PluginError(Exception):
    """An entry point that cannot be used: its module fails to import, or it is not what it claims."""


class Registry(Generic[T]):
    """Members of one entry-point group, by name; imported on first lookup."""

    def __init__(self, group: str, what: str, key: str | None = None) -> None:
        self.group = group
        self.what = what      # for messages: "feed kind", "config section", ...
        self.key = key        # a class attribute that must equal the entry point's name, if any
        self._registered: dict[str, T] = {}
        self._loaded: dict[str, T] = {}
        self._points: dict[str, metadata.EntryPoint] | None = None

    def register(self, member: T, name: str | None = None) -> T:
        """Add ``member`` in code (usable as a class decorator when the registry has a ``key``)."""
        name = name if name is not None else getattr(member, self.key or "", None)
        if not isinstance(name, str):
            raise TypeError(f"{self.what}: no name given for {member!r}")
        if self._registered.get(name, member) is not member:
            raise PluginError(f"{self.what} {name!r} registered twice")
        self._registered[name] = member
        return member

    def names(self) -> list[str]:
        """Every known member's name, without importing any of them."""
        return sorted(set(self._entry_points()) | set(self._registered))

    def get(self, name: str) -> T | None:
        """The member called ``name``, or None; raises PluginError when it cannot be loaded."""
        if name in self._registered:
            return self._registered[name]
        if name in self._loaded:
            return self._loaded[name]
        point = self._entry_points().get(name)
        if point is None:
            return None
        try:
            member = point.load()
        except Exception as exc:  # whatever a plugin's import raises, name it and the plugin
            raise PluginError(f"{self.what} {name!r} ({point.value}, from the {self.group!r} entry points) "
                              f"cannot be loaded: {type(exc).__name__}: {exc}") from exc
        if self.key is not None and getattr(member, self.key, None) != name:
            raise PluginError(f"{self.what} {name!r}: {point.value} has {self.key} = "
                              f"{getattr(member, self.key, None)!r}; it must equal the entry point's name")
        self._loaded[name] = member
        return member

    def all(self) -> dict[str, T]:
        """Every member, loaded (raises PluginError for the first that cannot be)."""
        members = {name: self.get(name) for name in self.names()}
        return {name: member for name, member in members.items() if member is not None}

    def _entry_points(self) -> dict[str, metadata.EntryPoint]:
        if self._points is None:
            points: dict[str, metadata.EntryPoint] = {}
            for point in metadata.entry_points(group=self.group):
                # The same distribution can be visible twice (an editable install and a copy on
                # sys.path); two different targets for one name is a real conflict.
                seen = points.get(point.name)
                if seen is not None and seen.value != point.value:
                    raise PluginError(f"{self.what} {point.name!r} is declared twice in the {self.group!r} "
                                      f"entry points: {seen.value} and {point.value}")
                points[point.name] = point
            self._points = points
        return self._points


# The extension points the core consults. The simulator keeps its own (``feedwatch.dialects``).
VENUES: Registry[Any] = Registry("feedwatch.venues", "feed kind", key="kind")
CONFIG_SECTIONS: Registry[Any] = Registry("feedwatch.sections", "config section")
WEB_EXTENSIONS: Registry[Any] = Registry("feedwatch.web", "web extension")
