"""The exporter's own health, with prometheus_client in a registry the caller passes in.

These few series change rarely and have no per-symbol labels, so the library is the right tool
here (unlike the Book, see collector.py). Their text-format exposition (``exporter.exposition``
renders it, OpenMetrics too, without the ``_created`` samples the library adds to counters)::

    # HELP feedwatch_build_info Build information (revision and branch of the build, exporter/version.py); always 1.
    # TYPE feedwatch_build_info gauge
    feedwatch_build_info{branch="main",python_version="3.11.7",revision="96eef71...",version="0.1.0"} 1.0
    # HELP feedwatch_event_loop_lag_seconds How late the event loop woke a timer at the last check.
    # TYPE feedwatch_event_loop_lag_seconds gauge
    feedwatch_event_loop_lag_seconds 0.0003
    # HELP feedwatch_scrape_duration_seconds Seconds the last /metrics render of the feed state took.
    # TYPE feedwatch_scrape_duration_seconds gauge
    feedwatch_scrape_duration_seconds 0.024
    # HELP feedwatch_scrape_errors_total Extra metric renderers (the trading collector) that failed during a scrape.
    # TYPE feedwatch_scrape_errors_total counter
    feedwatch_scrape_errors_total 0.0
    # HELP feedwatch_http_requests_rejected_total HTTP requests or connections refused before a handler could serve them, by reason.
    # TYPE feedwatch_http_requests_rejected_total counter
    feedwatch_http_requests_rejected_total{reason="connection_limit"} 0.0
    feedwatch_http_requests_rejected_total{reason="header_timeout"} 0.0
    feedwatch_http_requests_rejected_total{reason="body_timeout"} 0.0
    feedwatch_http_requests_rejected_total{reason="body_too_large"} 0.0
    feedwatch_http_requests_rejected_total{reason="unauthorized"} 0.0
    feedwatch_http_requests_rejected_total{reason="rate_limited"} 0.0
    # HELP feedwatch_http_connections Open HTTP connections.
    # TYPE feedwatch_http_connections gauge
    feedwatch_http_connections 3.0
    # HELP feedwatch_http_max_connections Most HTTP connections kept open at once (http.max_connections, bounded by the open files limit).
    # TYPE feedwatch_http_max_connections gauge
    feedwatch_http_max_connections 512.0

plus prometheus_client's process_*, python_gc_* and python_info collectors, registered in the
same registry (skipped for the library's global REGISTRY, which already has them).
"""

from __future__ import annotations

import asyncio
import logging
import platform
import weakref
from typing import Callable

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge
from prometheus_client import gc_collector, platform_collector, process_collector

from exporter.version import build_info

log = logging.getLogger(__name__)


_BY_REGISTRY: "weakref.WeakKeyDictionary[CollectorRegistry, SelfMetrics]" = weakref.WeakKeyDictionary()

# Why the HTTP server refused a request before (or instead of) serving it; each starts at 0.
HTTP_REJECT_REASONS = (
    "connection_limit",   # http.max_connections reached: a waiting connection closed for room, or a new one got 503
    "header_timeout",     # request line and headers not complete within http.header_timeout (408)
    "body_timeout",       # a request body not complete within http.body_timeout (408)
    "body_too_large",     # a request body over the route's limit (413; trading.api.max_body_size)
    "unauthorized",       # basic auth or client certificate SANs (--web.config.file; 401, 403), or the push API's token/signature (401)
    "rate_limited",       # over the web config's rate_limit (429)
)


class SelfMetrics:
    """Build info, event-loop lag, scrape duration and errors, registered in ``registry``.

    Use ``SelfMetrics.of(registry)``: a registry accepts each metric name once, so every app
    built on the same registry (the global one, in a process that restarts its server) shares
    one set.
    """

    @classmethod
    def of(cls, registry: CollectorRegistry) -> "SelfMetrics":
        metrics = _BY_REGISTRY.get(registry)
        if metrics is None:
            metrics = _BY_REGISTRY[registry] = cls(registry)
        return metrics

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        build = build_info()
        self.build_info = Gauge(
            "feedwatch_build_info",
            "Build information (revision and branch of the build, exporter/version.py); always 1.",
            ["branch", "python_version", "revision", "version"], registry=registry)
        self.build_info.labels(build["branch"], platform.python_version(), build["revision"], build["version"]).set(1)
        self.loop_lag = Gauge(
            "feedwatch_event_loop_lag_seconds",
            "How late the event loop woke a timer at the last check.",
            unit="seconds", registry=registry)
        self.scrape_duration = Gauge("feedwatch_scrape_duration_seconds",
                                     "Seconds the last /metrics render of the feed state took.",
                                     unit="seconds", registry=registry)
        self.scrape_errors = Counter("feedwatch_scrape_errors_total",
                                     "Extra metric renderers (the trading collector) that failed during a scrape.",
                                     registry=registry)
        self.http_rejected = Counter(
            "feedwatch_http_requests_rejected",
            "HTTP requests or connections refused before a handler could serve them, by reason.",
            ["reason"], registry=registry)
        for reason in HTTP_REJECT_REASONS:
            self.http_rejected.labels(reason)
        self.http_connections = Gauge("feedwatch_http_connections", "Open HTTP connections.", registry=registry)
        self.http_max_connections = Gauge(
            "feedwatch_http_max_connections",
            "Most HTTP connections kept open at once (http.max_connections, bounded by the open files limit).",
            registry=registry)
        if registry is not REGISTRY:  # the global registry has these already
            process_collector.ProcessCollector(registry=registry)
            platform_collector.PlatformCollector(registry=registry)
            gc_collector.GCCollector(registry=registry)

    def reject_http(self, reason: str) -> None:
        """Count one refused HTTP request (a reason of HTTP_REJECT_REASONS)."""
        self.http_rejected.labels(reason).inc()

    def watch_connections(self, open_connections: Callable[[], float], limit: int) -> None:
        """Read the open connection count at scrape time (from the server's connection guard)."""
        self.http_connections.set_function(open_connections)
        self.http_max_connections.set(limit)

    async def watch_loop_lag(self, interval: float = 0.5) -> None:
        """Sleep ``interval`` over and over; how late each wake-up comes is the loop's lag.

        A blocked loop (a slow render, a CPU-bound callback) shows here before it shows as
        missed heartbeats. Runs until cancelled.
        """
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(interval)
            lag = loop.time() - start - interval
            self.loop_lag.set(lag if lag > 0.0 else 0.0)
