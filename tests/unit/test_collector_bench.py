"""The benchmarks still run (tiny sizes, one or two rounds). No timing is asserted: speed lives
in bench/ and its README; this only keeps the benchmark code from rotting."""

from __future__ import annotations

import pytest

from bench import __main__ as bench_main
from bench import capacity, ingest, memory, render, scrape_load
from exporter.config import load_data, load_text


def test_ingest_benchmark_runs() -> None:
    result = ingest.measure(n_symbols=200, n_frames=20, per_frame=100, rounds=1, naive_rounds=1, progress=False)
    assert result.messages == 2_000
    assert result.feedwatch > 0 and result.decode_only > 0 and result.naive > 0 and result.bare > 0
    text = ingest.report(result)
    assert "msgs/s" in text and "ceiling here: the decode and the four writes alone reach " in text


def test_ingest_ceiling_writes_what_the_book_keeps() -> None:
    """The ceiling loop does the book's own writes: each symbol ends with the last decoded event's
    price (a quote's mid), venue stamp and count, as ``FeedBook.apply`` leaves an accepted one."""
    frames = ingest.make_frames(n_symbols=50, n_frames=10, per_frame=100)
    run, states = ingest.bare_loop(frames, 50)
    run()
    last, counts = {}, {}
    for frame in frames:
        for event in ingest._frame_decoder.decode(frame):
            last[event.symbol] = event
            counts[event.symbol] = counts.get(event.symbol, 0) + 1
    assert set(last) == set(states)
    for symbol, event in last.items():
        state = states[symbol]
        price = (event.bid + event.ask) * 0.5 if event.is_quote else event.price
        assert (state.price, state.last_event, state.updates) == (price, event.ts, counts[symbol])
        assert state.last_update == ingest.T0_MS / 1000 + 0.2


def test_ingest_frames_look_like_polygon() -> None:
    frames = ingest.make_frames(n_symbols=10, n_frames=2, per_frame=100)
    events = ingest._frame_decoder.decode(frames[0])
    assert len(events) == 100 and {type(e).__name__ for e in events} == {"Trade", "Quote"}


def test_render_benchmark_runs() -> None:
    results = render.measure(sizes=(50, 100), children_up_to=100, rounds=1, progress=False)
    assert [r.symbols for r in results] == [50, 100]
    assert all(r.feedwatch > 0 and r.children and r.size > 0 and r.gzip_fast_size < r.size for r in results)
    assert "symbols" in render.report(results)


def test_scrape_load_benchmark_runs(monkeypatch) -> None:
    """Blaster, the real exporter and the scraper, at toy sizes: the processes start, talk and stop."""
    monkeypatch.setattr(scrape_load, "PHASE", 0.5)
    monkeypatch.setattr(scrape_load, "CONCURRENT", 10)
    monkeypatch.setattr(scrape_load, "CONCURRENT_SYMBOLS", 300)   # one exporter for both parts
    result = scrape_load.measure(n=300, phases=2, progress=False)
    assert [p.scraping for p in result.phases] == [False, True]
    assert all(p.rate > 0 for p in result.phases) and result.phases[1].scrapes
    assert result.concurrent["alone"] > 0 and result.concurrent["longest"] > 0
    assert result.concurrent["floor"] > 0 and len(result.concurrent["floor_rounds"]) == scrape_load.CONCURRENT_ROUNDS
    text = scrape_load.report(result)
    assert text.count("[ok]") + text.count("[fail]") == 5


def test_scrape_load_config_holds_the_full_benchmark() -> None:
    """The toy run above cannot see the symbol limits: the full-size config must load too."""
    config = load_text(scrape_load.config_text(9100, 9101, scrape_load.SYMBOLS))
    assert len(config.feeds[0].symbols) == scrape_load.SYMBOLS


def test_capacity_process_config_holds_the_full_benchmark() -> None:
    config = load_data(capacity.process_config(9100, 100_000))
    assert len(config.feeds[0].symbols) == 100_000


def test_memory_benchmark_runs() -> None:
    result = memory.measure(n=500, children_n=100, progress=False)
    assert result.book_bytes > 0 and result.children_bytes > 0 and result.render_cache_bytes > 0
    assert "bytes/symbol" in memory.report(result)


def test_capacity_benchmark_runs_and_plans() -> None:
    result = capacity.measure(messages=2_000, render_symbols=200, process_symbols=500, rounds=1, progress=False)
    assert result.socket_frame > 0 and result.single_frame > 0 and result.batched_message > 0
    assert result.render_symbol > 0 and result.series_symbol >= 6 and result.rss_base > 0
    load = capacity.Load("test", symbols=10_000, rate=100_000, frame=100, basis="test")
    plan = capacity.plan(result, load, utilisation=0.5, redundancy=2)
    # The arithmetic: the fewest shards that keep each replica under the utilisation, two per shard.
    assert plan.cpu_per_replica <= 0.5 + 1e-3 and plan.replicas == 2 * plan.shards
    assert plan.cpu > 0.5 * (plan.shards - 1)
    assert "replicas" in capacity.report(result, (load,))


def test_bench_cli_rejects_unknown_names(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        bench_main.main(["nope"])
    assert exc.value.code == 2
    assert "unknown benchmark" in capsys.readouterr().err
