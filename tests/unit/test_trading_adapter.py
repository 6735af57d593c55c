"""The ``kind: trading`` adapter from frames (no network): events reach the tracker, problems the runner."""

from __future__ import annotations

import json

from exporter.trading import tracker as trading
from exporter.book import FeedBook
from exporter.config import load_data
from exporter.feeds import registry
from exporter.feeds.base import Close, Heartbeat, Problem
from exporter.feeds.trading import TradingAdapter


def setup(clock, api_key: str = ""):
    config = load_data({"feeds": [{"name": "bot", "kind": "trading", "url": "ws://127.0.0.1:1", "api_key": api_key}],
                        "trading": {"accounts": [{"name": "main"}]}}, {})
    feed_config = config.feeds[0]
    adapter = TradingAdapter(feed_config, FeedBook(feed_config, clock.time()), "0")  # before attach
    tracker = trading.attach(config, clock.time())
    return config, adapter, tracker


def test_registered_as_kind_trading():
    assert registry.get("trading") is TradingAdapter


def test_frames_reach_the_tracker_even_when_attached_after_the_adapter(clock):
    config, adapter, tracker = setup(clock)
    now = clock.time()
    frame = json.dumps([{"type": "equity", "account": "main", "id": 1, "ts": now, "equity": 500.0},
                        {"type": "heartbeat"}])
    assert adapter.handle(frame, now) == [Heartbeat()]
    assert tracker.accounts["main"].equity == 500.0
    assert adapter.feed.messages["other"] == 1
    # The same event again after a reconnect: counted once, and not a problem.
    assert adapter.handle(json.dumps({"type": "equity", "account": "main", "id": 1, "ts": now, "equity": 1.0}),
                          now) == ()
    assert tracker.rejected["duplicate"] == 1 and tracker.accounts["main"].equity == 500.0
    trading.detach(config)


def test_bad_events_become_runner_problems(clock):
    config, adapter, tracker = setup(clock)
    signals = adapter.handle(b'[{"type":"equity","account":"main","id":2}, {"type":"nope","account":"main"}]',
                             clock.time())
    kinds = [s.kind for s in signals if isinstance(s, Problem)]
    assert kinds == ["decode", "protocol"]
    assert "missing required field" in signals[0].message
    assert adapter.handle(b"\x00garbage", clock.time())[0].kind == "decode"
    assert tracker.rejected["malformed"] == 2 and tracker.rejected["unknown_type"] == 1
    trading.detach(config)


def test_without_a_tracker_every_frame_is_a_problem(clock):
    config = load_data({"feeds": [{"name": "bot", "kind": "trading", "url": "ws://127.0.0.1:1"}],
                        "trading": {"accounts": [{"name": "main"}]}}, {})
    adapter = TradingAdapter(config.feeds[0], FeedBook(config.feeds[0], clock.time()))
    (signal,) = adapter.handle(b"{}", clock.time())
    assert isinstance(signal, Problem) and "no trading tracker" in signal.message


def test_auth_message_only_with_an_api_key(clock):
    config, adapter, _ = setup(clock, api_key="k")
    assert json.loads(adapter.open_messages()[0]) == {"type": "auth", "token": "k"}
    assert adapter.subscribed_in_url()
    trading.detach(config)
    config, adapter, _ = setup(clock)
    assert adapter.open_messages() == []
    trading.detach(config)


def test_a_frame_the_store_cannot_keep_closes_the_stream_and_is_not_applied(clock):
    """Disk full: hang up (the bot replays after reconnecting) rather than run ahead of the file."""
    from exporter.trading.store import MemoryStore, StoreError

    class FullDisk(MemoryStore):
        full = True

        def commit(self) -> None:
            if self.full:
                raise StoreError("trading state file /x: COMMIT failed: database or disk is full")
            super().commit()

    config, adapter, tracker = setup(clock)
    assert adapter.feed.disconnects["state_store"] == 0  # starts at 0, like every reason
    tracker.store = FullDisk()
    frame = json.dumps({"type": "safety", "account": "main", "id": "k", "ts": clock.time(), "kill_switch": True})
    (signal,) = adapter.handle(frame, clock.time())
    assert isinstance(signal, Close) and signal.reason == "state_store" and "disk is full" in signal.message
    assert tracker.accounts["main"].kill_switch is False and adapter.feed.messages["other"] == 0
    tracker.store.full = False
    assert adapter.handle(frame, clock.time()) == () and tracker.accounts["main"].kill_switch is True
    trading.detach(config)
