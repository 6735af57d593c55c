"""feedwatch: a Prometheus exporter for market-data freshness and trading risk.

The import package is ``exporter``; the distribution and console script are ``feedwatch``.
"""

__version__ = "0.1.0"
