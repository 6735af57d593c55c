"""The transport benchmark still runs (a toy size, one round, a real blaster process and real
sockets). No speed is asserted: the figures live in bench/README.md."""

from __future__ import annotations

from bench import transport


def test_transport_benchmark_runs() -> None:
    result = transport.measure(messages=4_000, rounds=1, pin=False, progress=False)
    assert set(result.rates) == set(transport.CONTENDERS)
    assert all(rate > 0 for rate in result.rates.values())
    text = transport.report(result)
    assert "frames/s" in text and "feedwatch / websockets" in text and "frame recording costs" in text
    assert "feedwatch / cryptofeed on the same aggTrade frames" in text and ">= 5x cryptofeed (" in text
    assert "feedwatch transport: picows / aiohttp" in text and " with transport: " in text
    assert "machine yardstick: aiohttp's transport alone made " in text
    assert "ceiling here: the fastest transport with the typed decode alone made " in text
