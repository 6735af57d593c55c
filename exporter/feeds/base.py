"""What a venue adapter is, and the signals it sends the runner.

An adapter is pure: it turns frames into book updates and control *signals*, and turns symbol
lists into messages to send. It never touches a socket, a metric library or a logger; the runner
(``exporter/feeds/runner.py``) owns the socket, acts on the signals, counts and logs them once.
So every venue is testable from recorded frames with no network::

    feed = FeedBook(config, now)
    adapter = PolygonAdapter(config, feed, "0")
    signals = adapter.handle(frame_bytes, now)      # the book is updated, signals returned

One adapter instance serves one connection (``connection`` is its label value: "0", "1", ...).

Lifecycle the runner drives, per connection::

    ws = connect(adapter.url(symbols))
    send(adapter.open_messages())                  # e.g. Polygon's auth
    if adapter.requires_auth: wait for Authenticated / AuthFailed
    send(adapter.subscribe_messages(symbols))      # paced at control_rate, batched by the adapter
    loop: frame -> adapter.handle(frame, now) -> signals
          every ping_interval: adapter.ping_message() (app level) or a WebSocket ping

``handle`` never raises, whatever the frame: text or bytes, invalid UTF-8, JSON nested a
thousand deep, a number of any size or type where another was expected. Each such frame is
counted (a ``Problem``: ``feedwatch_feed_errors_total{kind}``) or its updates are rejected by the
book (``feedwatch_feed_rejected_updates_total{reason}``, reported as ``Rejected``), so the
runner's own catch-all around ``handle`` stays a last resort that never fires. Decoders raise
``DECODE_ERRORS`` on bad input: msgspec's ``DecodeError`` and ``UnicodeError`` (both
``ValueError``) and ``RecursionError`` (deep nesting). ``tests/fuzz/`` holds every adapter to this.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Sequence

import msgspec

from exporter.config import FeedConfig, NoOptions
from exporter.text import preview  # noqa: F401 (adapters take it from here)

if TYPE_CHECKING:
    from exporter.book import FeedBook

# What decoding a frame may raise on hostile input; every adapter catches exactly these.
DECODE_ERRORS = (ValueError, RecursionError)


# --- signals: what a frame meant, beyond price updates ----------------------------------------

class Signal:
    """Base class of everything ``Adapter.handle`` can return."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Authenticated(Signal):
    """The venue accepted the credentials; the runner may subscribe now."""


@dataclass(frozen=True, slots=True)
class AuthFailed(Signal):
    """The venue refused us. ``reason`` is a disconnect reason: auth_failed or max_connections."""

    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Acknowledged(Signal):
    """The venue confirmed these symbols' subscriptions."""

    symbols: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Unsubscribed(Signal):
    """The venue confirmed these symbols are no longer subscribed."""

    symbols: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Heartbeat(Signal):
    """An application-level pong (or venue ping) arrived: the connection is alive."""


@dataclass(frozen=True, slots=True)
class Reply(Signal):
    """Send this text back now (an application-level pong to a venue's ping, for example)."""

    text: str


@dataclass(frozen=True, slots=True)
class Close(Signal):
    """The venue asked us to go (maintenance, limits): reconnect with this disconnect reason."""

    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Problem(Signal):
    """Something wrong but survivable: counted under ``kind`` (an error kind), logged once."""

    kind: str
    message: str


@dataclass(frozen=True, slots=True)
class Rejected(Signal):
    """The book rejected updates of this frame (already counted under ``reason``): log it once."""

    reason: str
    message: str


NOTHING: tuple[Signal, ...] = ()


def decode_reason(exc: BaseException) -> str:
    """Why a frame did not decode, for a message (a RecursionError's own text says nothing of JSON)."""
    return "JSON nested too deeply" if isinstance(exc, RecursionError) else str(exc)


def excerpt(value: object, limit: int = 120) -> str:
    """A decoded JSON value (from a venue) for a message, never raising: values nested too deeply
    for ``str`` are described, not printed."""
    try:
        text = msgspec.json.encode(value).decode()
    except (RecursionError, TypeError, ValueError, msgspec.EncodeError):
        return f"<{type(value).__name__} too deeply nested to show>"
    return preview(text, limit)


def rejections(feed: "FeedBook", data: str | bytes) -> tuple[Signal, ...]:
    """The book's notes of the updates it just rejected, as signals quoting the frame.

    Adapters call it after ``apply`` only when ``feed.notes`` is not empty (the slow path)."""
    return tuple(Rejected(reason, f"{detail}; frame: {preview(data)}") for reason, detail in feed.take_notes())


class Adapter:
    """Base class for venue adapters. Subclasses set ``kind`` and implement ``handle``."""

    kind: ClassVar[str]
    # Venue-specific config keys (a frozen dataclass; its defaults are the documented defaults).
    Options: ClassVar[type] = NoOptions
    # The runner waits for Authenticated (or AuthFailed) before subscribing.
    requires_auth: ClassVar[bool] = False
    # At most this many control messages (subscribe/unsubscribe/list) per second; None = no cap.
    control_rate: ClassVar[float | None] = None
    # The venue sends its own WebSocket pings (Binance), so ours are unnecessary.
    server_pings: ClassVar[bool] = False
    # Human-readable description for the landing page and docs.
    description: ClassVar[str] = ""

    def __init__(self, config: FeedConfig, feed: "FeedBook", connection: str = "0") -> None:
        self.config = config
        self.options = config.options
        self.feed = feed
        self.connection = connection

    # --- limits the runner enforces ---------------------------------------------------------

    def capacity(self) -> int | None:
        """Most symbols one connection may carry (the runner shards above it); None = no limit."""
        return None

    def max_connection_age(self) -> float | None:
        """Seconds after which the venue cuts a connection; the runner rolls over before it."""
        return None

    # --- messages to send -------------------------------------------------------------------

    def url(self, symbols: Sequence[str]) -> str:
        """The URL to connect to for a connection carrying ``symbols``."""
        return self.config.url

    def open_messages(self) -> list[str]:
        """Sent right after the socket opens (authentication, typically)."""
        return []

    def subscribe_messages(self, symbols: Sequence[str]) -> list[str]:
        """Messages that subscribe ``symbols`` (batched to the venue's limits)."""
        return []

    def unsubscribe_messages(self, symbols: Sequence[str]) -> list[str]:
        return []

    def ping_message(self) -> str | None:
        """An application-level ping to send every ``ping_interval``; None = use WebSocket pings."""
        return None

    def subscribed_in_url(self) -> bool:
        """True when the URL itself subscribes (no subscribe messages, acked on connect)."""
        return False

    # --- frames in --------------------------------------------------------------------------

    def handle(self, data: str | bytes, now: float) -> Sequence[Signal]:
        """Decode one frame, update the book, return control signals (NOTHING on the hot path)."""
        raise NotImplementedError

    @classmethod
    def check_config(cls, config: FeedConfig) -> list[str]:
        """Venue rules on the config, as "key: problem" strings relative to the feed."""
        return []
