"""A real Prometheus (Debian's 2.42) scrapes the exporter: it asks for OpenMetrics first by default,
gets it, and ingests every series, counters and histograms included.

The OpenMetrics body is also checked strictly by prometheus_client's OpenMetrics parser
(tests/unit/test_exposition.py, test_server.py) and linted by promtool (test_promtool.py).
"""

from __future__ import annotations

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from exporter.alerting import stack as alertstack
from exporter.clock import FakeClock
from exporter.web.app import create_app, serve
from tests.integration.test_promtool import polygon_book
from tests.waiting import async_wait_for, free_port

pytestmark = pytest.mark.integration


async def test_prometheus_scrapes_openmetrics_and_ingests_every_series(tmp_path, clock: FakeClock) -> None:
    config, book, _ = polygon_book(clock)
    app = create_app(book, config, clock, CollectorRegistry())
    served: list[tuple[str, str]] = []

    async def record(request, response) -> None:
        if request.path == "/metrics":
            served.append((request.headers.get("Accept", ""), response.headers.get("Content-Type", "")))

    app.on_response_prepare.append(record)
    runner, port = await serve(app, "127.0.0.1:0")
    prom_port = free_port()
    prometheus = alertstack.start_prometheus({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [{"job_name": "feedwatch", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}],
    }, tmp_path / "prometheus", prom_port)
    try:
        async with aiohttp.ClientSession() as http:
            async def query(expr: str) -> list[dict]:
                async with http.get(f"{prometheus.url}/api/v1/query", params={"query": expr}) as resp:
                    return (await resp.json())["data"]["result"]

            async def scraped() -> list[dict]:
                if prometheus.popen.poll() is not None:
                    raise AssertionError(f"prometheus exited:\n{prometheus.log_tail()}")
                result = await query('up{job="feedwatch"} == 1 and scrape_samples_scraped > 0')
                return result

            await async_wait_for(scraped, timeout=60, what="a successful scrape by Prometheus")
            async with http.get(f"{prometheus.url}/api/v1/targets") as resp:
                target = (await resp.json())["data"]["activeTargets"][0]
            assert target["health"] == "up" and target["lastError"] == "", target

            # Prometheus asked for OpenMetrics first, and got it.
            accept, content_type = served[-1]
            assert accept.startswith("application/openmetrics-text")
            assert content_type == "application/openmetrics-text; version=1.0.0; charset=utf-8"

            # Everything was ingested: as many series as the exposition holds samples.
            body = await (await http.get(f"http://127.0.0.1:{port}/metrics", headers={"Accept": accept})).text()
            samples = [line for line in body.splitlines() if line and not line.startswith("#")]
            added = await query('scrape_samples_scraped{job="feedwatch"}')
            assert int(float(added[0]["value"][1])) == len(samples)

            # Counters keep their _total samples, histograms their buckets; values are the book's.
            feed = book.feeds["extended"]
            connects = await query('feedwatch_feed_connects_total{feed="extended"}')
            assert float(connects[0]["value"][1]) == feed.connects
            updates = await query('feedwatch_symbol_updates_total{feed="extended",symbol="MSFT"}')
            assert float(updates[0]["value"][1]) == feed.symbols["MSFT"].updates
            buckets = await query('feedwatch_feed_latency_seconds_bucket{feed="extended",le="+Inf"}')
            assert float(buckets[0]["value"][1]) == sum(feed.latency_counts)
            assert await query('feedwatch_build_info{revision!="unknown"}')
    finally:
        prometheus.stop()
        await runner.cleanup()
