"""feedwatch: a Prometheus exporter for market-data freshness and trading risk.

The import package is ``exporter``; the distribution and console script are ``feedwatch``.
``docs/architecture.md`` shows the subpackages and the one-way dependencies between them.
"""

from exporter.version import __version__

__all__ = ["Monitor", "__version__"]


def __getattr__(name: str):
    # ``from exporter import Monitor`` (the in-process API, docs/in-process.md), imported lazily
    # so ``import exporter`` stays cheap for the CLI.
    if name == "Monitor":
        from exporter.monitor import Monitor

        return Monitor
    raise AttributeError(f"module 'exporter' has no attribute {name!r}")
