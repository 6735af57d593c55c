"""Config reloads land in the incident journal: a real ``Exporter`` (what ``feedwatch run`` runs),
``POST /-/reload`` with a broken file, then with a feed added; the journal keeps both reloads
and the added feed's connection, and the outage of a feed the reload removed is closed."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
import yaml

from exporter.commands.run import Exporter
from exporter.config import load_file
from exporter.simulator.server import Simulator
from tests.integration.feedharness import API_KEY, feed_config
from tests.waiting import async_wait_for

pytestmark = pytest.mark.integration


async def test_reloads_and_what_they_change_are_journaled(tmp_path: Path) -> None:
    sim = Simulator("polygon", ("AAPL",), rate=20, api_key=API_KEY)
    other = Simulator("polygon", ("AAPL",), rate=20, api_key=API_KEY)
    await sim.start()
    await other.start()
    path = tmp_path / "feedwatch.yml"

    def write(feeds: list[dict], extra: str = "") -> None:
        path.write_text(yaml.safe_dump({"listen": "127.0.0.1:0", "feeds": feeds,
                                        "journal": {"path": str(tmp_path / "journal.sqlite"),
                                                    "flush_interval": "50ms"}}) + extra)

    write([feed_config(sim.ws_url, symbols=("AAPL",)), feed_config(other.ws_url, name="other", symbols=("AAPL",))])
    exporter = Exporter(load_file(str(path)), load=lambda: load_file(str(path)), source=str(path))
    await exporter.start()
    journal = exporter.service.journal
    try:
        async with aiohttp.ClientSession() as http:
            async def reload() -> int:
                async with http.post(f"{exporter.base_url}/-/reload") as resp:
                    return resp.status

            book = exporter.service.book
            await async_wait_for(lambda: book.feeds["stocks"].is_up() and book.feeds["other"].is_up(), timeout=20,
                                 what="the feeds connected")
            await other.stop(abort=True)                                 # "other" goes down: an incident
            await async_wait_for(lambda: ("feed", "other") in journal.open, timeout=20, what="the outage journaled")
            outage = journal.open[("feed", "other")]
            write([feed_config(sim.ws_url, symbols=("AAPL",))], extra="bogus: 1\n")
            assert await reload() == 500
            write([feed_config(sim.ws_url, symbols=("AAPL",)), feed_config(sim.ws_url, name="more", symbols=("AAPL",))])
            assert await reload() == 200
            await async_wait_for(lambda: book.feeds["more"].is_up(), timeout=20, what="the added feed connected")
            await async_wait_for(lambda: outage.resolved_at is not None, timeout=20,
                                 what="the removed feed's incident closed")
            assert await journal.writer.drained(20)
            async with http.get(f"{exporter.base_url}/api/v1/journal", params={"limit": "100"}) as resp:
                events = list(reversed((await resp.json())["events"]))
        reloads = [(e["state"], e["count"], e["detail"]) for e in events if e["kind"] == "reload"]
        assert reloads[0][:2] == ("failed", 1) and "bogus: unknown key" in reloads[0][2]
        assert reloads[0][2].startswith("POST /-/reload: ")
        assert reloads[1] == ("ok", 0, "POST /-/reload")
        assert [(e["kind"], e["feed"]) for e in events if e["feed"] == "more"] == [("connect", "more")]
        assert outage.reason.endswith("feed removed from the configuration")
    finally:
        await exporter.stop()
        await sim.stop()
        await other.stop()
