"""Every frame the fuzzing found to break an adapter or the scrape, as a regular unit test.

The frames are recorded in ``tests/fixtures/<venue>/fuzz/`` (they seed the fuzzer too). Each
raised out of ``handle()`` on the code before issue 9, or was stored and then failed every
``/metrics`` (a ~320-digit timestamp), or was stored silently (a timestamp in 1970, or in
2100 and beyond). Now each is counted where it belongs, the book stays clean, and ``/metrics`` renders:
``Target.feed_frame`` and ``check_render`` (tests/fuzz/harness.py) check those properties.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.feeds.base import Problem, Rejected
from tests.fuzz.harness import Target

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
COINBASE, ARRAY = 0, 2  # the generic adapter's fixture configurations (harness.GENERIC_CONFIGS)

# (venue, generic config, frame, counter, label value): the one count the frame must add.
CASES = [
    ("polygon", 0, "huge_timestamp.json", "rejected", "implausible_timestamp"),
    ("polygon", 0, "negative_timestamp.json", "rejected", "implausible_timestamp"),
    ("polygon", 0, "timestamp_1970.json", "rejected", "implausible_timestamp"),
    ("polygon", 0, "timestamp_year_2100_ns.json", "rejected", "implausible_timestamp"),
    ("polygon", 0, "invalid_utf8_in_symbol.json", "errors", "protocol"),
    ("polygon", 0, "quote_sides_near_max_float.json", "messages", "quote"),  # accepted: a finite mid
    ("polygon", 0, "nested_1000_deep.json", "errors", "decode"),
    ("binance", 0, "huge_trade_time.json", "rejected", "implausible_timestamp"),
    ("binance", 0, "event_type_not_a_string.json", "errors", "protocol"),
    ("binance", 0, "list_subscriptions_nested_list.json", "errors", "protocol"),
    ("binance", 0, "list_subscriptions_numbers.json", "errors", "protocol"),
    ("binance", 0, "list_subscriptions_mixed.json", "errors", "protocol"),
    ("binance", 0, "invalid_utf8_in_key.json", "errors", "decode"),
    ("binance", 0, "nested_1000_deep.json", "errors", "decode"),
    ("bybit", 0, "huge_ticker_ts.json", "rejected", "implausible_timestamp"),
    ("bybit", 0, "huge_trade_time.json", "rejected", "implausible_timestamp"),
    ("bybit", 0, "invalid_utf8_in_topic.json", "errors", "decode"),
    ("bybit", 0, "nested_1000_deep.json", "errors", "decode"),
    ("generic", ARRAY, "huge_price.json", "rejected", "infinite_price"),
    ("generic", ARRAY, "huge_timestamp.json", "rejected", "implausible_timestamp"),
    ("generic", COINBASE, "iso_time_past_year_9999.json", "rejected", "implausible_timestamp"),
    ("generic", COINBASE, "iso_time_before_year_1.json", "rejected", "implausible_timestamp"),
    ("generic", COINBASE, "invalid_utf8_in_key.json", "errors", "decode"),
    ("generic", ARRAY, "nested_1000_deep.json", "errors", "decode"),
    ("trading", 0, "ts_year_9999_minus_2359.json", "trading", "future"),
    ("trading", 0, "ts_year_1_plus_0001.json", "trading", "expired"),
    ("trading", 0, "ts_1e300.json", "trading", "future"),
    ("trading", 0, "ts_1e26.json", "trading", "future"),
    ("trading", 0, "ts_max_float.json", "trading", "future"),
    ("trading", 0, "huge_id.json", "trading", "malformed"),
    ("trading", 0, "huge_limit.json", "trading", "malformed"),
    ("trading", 0, "invalid_utf8_in_account.json", "trading", "malformed"),
    ("trading", 0, "nested_1000_deep.json", "trading", "malformed"),
]


def counters(target: Target, counter: str) -> dict[str, int]:
    if counter == "trading":
        return dict(target.tracker.rejected)
    return dict(getattr(target.feed, counter))


@pytest.mark.parametrize("venue,variant,name,counter,key", CASES, ids=[f"{c[0]}/{c[2]}" for c in CASES])
def test_poison_frame_is_counted_and_the_scrape_survives(venue, variant, name, counter, key):
    target = Target(venue, variant)
    for state in target.feed.symbols.values():
        state.guard = False  # a clean first print would otherwise be held back, not applied
    before = counters(target, counter)
    latency_before = sum(target.feed.latency_counts)
    signals = target.feed_frame((FIXTURES / venue / "fuzz" / name).read_bytes())  # no escape, counted
    after = counters(target, counter)
    assert after[key] == before.get(key, 0) + 1, (after, signals)
    assert sum(after.values()) == sum(before.values()) + 1  # counted once, under that reason only
    # Reported for the runner's log: a Problem (counted by the runner) or a Rejected (by the book).
    if counter == "messages":  # accepted, and stored as a finite price (check_state said so)
        assert signals == () and sum(s.updates for s in target.feed.symbols.values()) == 1
    elif counter == "rejected":
        assert [(type(s), s.reason) for s in signals] == [(Rejected, key)]
        assert all(s.updates == 0 for s in target.feed.symbols.values())  # nothing stored
        assert sum(target.feed.latency_counts) == latency_before           # no latency observed
    else:
        assert any(type(s) is Problem for s in signals)
    target.check_render()  # /metrics renders, passes the exposition checks, nothing skipped


def test_text_frames_with_lone_surrogates_are_decode_problems():
    """A str frame that is not valid Unicode (invalid bytes decoded with surrogateescape)."""
    for venue in ("polygon", "binance", "bybit", "generic", "trading"):
        target = Target(venue, ARRAY if venue == "generic" else 0)
        frame = b'[{"ev":"T","sym":"\xffAAPL","p":1.0,"t":1}]'.decode("utf-8", "surrogateescape")
        signals = target.feed_frame(frame)
        problems = [s for s in signals if type(s) is Problem]
        if venue == "trading":
            assert target.tracker.rejected["malformed"] == 1
        assert problems and all(s.message.encode("utf-8") for s in problems)  # loggable, JSON-able
