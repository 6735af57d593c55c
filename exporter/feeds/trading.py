"""A trading bot's event stream (``kind: trading``): the bot serves a WebSocket, feedwatch listens.

Every frame is one event object or a JSON array of them, exactly the events of
docs/trading-events.md (the same body ``POST /api/v1/events`` takes)::

    <- {"type":"equity","account":"main","id":"eq-1042","ts":1700000000.5,"equity":10250.0}
    <- [{"type":"trade","account":"main","id":"t-77","ts":1700000001,"symbol":"BTCUSDT","side":"long",
         "quantity":0.1,"entry_price":43000,"exit_price":43100,"pnl":10.0,"fees":0.4}, ...]
    <- {"type":"heartbeat"}                                    (optional: the bot is alive)

With ``api_key`` set, feedwatch sends ``{"type":"auth","token":"<api_key>"}`` when the socket
opens (bots that want one). There is nothing to subscribe: the feed has no symbols, and its
connection metrics (up, reconnects, heartbeats, errors) come from the shared runner like any
feed's. The events go to the process's ``Tracker`` (``exporter.trading.tracker.attach`` registers it for
this feed's config); replays after a reconnect are recognised by event id and counted once.

Frames are counted as ``feedwatch_feed_messages_total{kind="other"}``; refused events are
counted in ``feedwatch_trading_events_rejected_total{reason}`` and reported to the runner as a
``Problem`` (``decode`` for malformed events, ``protocol`` for the rest), which counts them in
``feedwatch_feed_errors_total`` and logs them once. Duplicates are not problems. When the state
file cannot be written the frame is not applied and the connection is closed with reason
``state_store`` (the bot replays after reconnecting; nothing counts twice).
"""

from __future__ import annotations

from typing import Sequence

import msgspec

from exporter.trading.tracker import tracker_for_feed
from exporter.feeds.base import NOTHING, Adapter, Close, Heartbeat, Problem, Signal

_encode = msgspec.json.encode
# The disconnect reason when the trading state file cannot be written (the frame is dropped).
STATE_STORE = "state_store"


class TradingAdapter(Adapter):
    kind = "trading"
    description = "A trading bot's event stream (docs/trading-events.md)"

    def __init__(self, config, feed, connection: str = "0") -> None:
        super().__init__(config, feed, connection)
        self.tracker = tracker_for_feed(config)
        # This feed's own disconnect reason, at 0 from the start like the common ones (check-config
        # builds adapters on a stand-in book that has no counters).
        disconnects = getattr(feed, "disconnects", None)
        if disconnects is not None:
            disconnects.setdefault(STATE_STORE, 0)

    def open_messages(self) -> list[str]:
        if not self.config.api_key:
            return []
        return [_encode({"type": "auth", "token": self.config.api_key}).decode()]

    def subscribed_in_url(self) -> bool:
        return True  # nothing to subscribe: the bot streams as soon as we connect

    def handle(self, data: str | bytes, now: float) -> Sequence[Signal]:
        tracker = self.tracker
        if tracker is None:
            tracker = self.tracker = tracker_for_feed(self.config)
            if tracker is None:
                return (Problem("protocol", "no trading tracker for this feed: the config needs a trading: "
                                            "section (and the service must call exporter.trading.tracker.attach)"),)
        result = tracker.ingest_json(data, now)
        if result.store_error is not None:
            # Nothing of this frame was kept. Hang up rather than carry on without it: the feed
            # shows down (loud), and a bot that replays after a reconnect sends it again.
            return (Close(STATE_STORE, f"trading state cannot be saved, frame dropped: {result.store_error}"),)
        # One per event; a frame with none (an empty array) counts as one message itself.
        self.feed.messages["other"] += (result.accepted + result.total_rejected
                                        or (0 if result.heartbeats else 1))
        if not result.problems and not result.heartbeats:
            return NOTHING
        signals: list[Signal] = []
        if result.heartbeats:
            signals.append(Heartbeat())
        for problem in result.problems:
            kind = "decode" if problem.startswith("malformed") else "protocol"
            signals.append(Problem(kind, f"trading event refused: {problem}"))
        return signals

    @classmethod
    def check_config(cls, config) -> list[str]:
        problems = []
        if not config.url:
            problems.append("url: required for trading feeds (the bot's WebSocket, e.g. ws://127.0.0.1:8000/ws/events)")
        if config.symbols:
            problems.append("symbols: a trading feed carries no symbols (map position symbols to price feeds "
                            "in trading.accounts[].symbols)")
        return problems
