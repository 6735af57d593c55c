"""REST snapshots for the fallback: what to request and how to read the answer (pure, no I/O).

While a feed's socket is down, or a symbol is stale, the poller (``restpoll.py``, beside the
runner) asks the venue's REST API for the affected symbols' current price. Each venue's request
building and response parsing lives in its own module beside its adapter
(``polygon_rest.py``, ``binance_rest.py``, ``bybit_rest.py``, ``generic_rest.py``) as a
``RestVenue``; tests drive them from recorded responses in ``tests/fixtures/<venue>/``.

    venue = rest_venue(feed_config)                    # None when the kind has none
    for request in venue.requests(["AAPL", "MSFT"]):   # one or more HTTP GETs (batched where the venue can)
        status, headers, body = ...                    # the poller's business
        quotes = venue.parse(request, status, body)    # [Snapshot(...)], or raises RestError(result)

``RestError.result`` is the label value of ``feedwatch_feed_rest_requests_total{result}``.
"""

from __future__ import annotations

import importlib
import json
import math
from dataclasses import dataclass
from typing import Any, Sequence

from exporter import book
from exporter.config import FeedConfig

# feedwatch_feed_rest_requests_total{result}, every value at 0 from the start (kept in the book):
#   ok             a 2xx answer that parsed (prices applied, or nothing newer than the book's)
#   http_error     any other status (5xx, 4xx other than the rate limits), or the venue's error code
#   rate_limited   429, Binance 418 (IP ban), Bybit's "too many visits": the poller pauses
#   timeout        no complete answer within rest.timeout
#   network_error  refused, reset, DNS, TLS
#   decode_error   a 2xx answer that is not the documented shape
REST_RESULTS = book.REST_RESULTS
# Where each venue's snapshot lives (imported on first use).
_VENUES = {
    "polygon": "exporter.feeds.polygon_rest:PolygonRest",
    "binance": "exporter.feeds.binance_rest:BinanceRest",
    "bybit": "exporter.feeds.bybit_rest:BybitRest",
    "generic": "exporter.feeds.generic_rest:GenericRest",
}


class RestError(Exception):
    """A request that did not yield prices: ``result`` says how (a REST_RESULTS value)."""

    def __init__(self, result: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.result = result
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True)
class RestRequest:
    """One GET: its URL, the symbols it covers, and what it costs against the venue's limit."""

    url: str
    symbols: tuple[str, ...]
    weight: int = 1


@dataclass(frozen=True)
class Snapshot:
    """One symbol's price from a REST answer: a trade (bid == ask == price) or a quote.

    ``ts`` is the venue's timestamp, raw (any Unix unit, 0 = none given).
    """

    symbol: str
    bid: float
    ask: float
    ts: float = 0


class RestVenue:
    """A venue's REST snapshot: requests for symbols, answers to prices."""

    # The venue's public REST API when ``rest.url`` is empty.
    default_url = ""
    # Requests per second when ``rest.max_requests_per_second`` is 0: well inside the venue's limit.
    default_rate = 1.0

    def __init__(self, config: FeedConfig) -> None:
        self.config = config
        self.base = (config.rest.url or self.default_url).rstrip("/")

    @property
    def rate(self) -> float:
        return self.config.rest.max_requests_per_second or self.default_rate

    def requests(self, symbols: Sequence[str]) -> list[RestRequest]:
        raise NotImplementedError

    def parse(self, request: RestRequest, status: int, body: bytes, headers: Any = None) -> list[Snapshot]:
        raise NotImplementedError


def rest_venue(config: FeedConfig) -> RestVenue | None:
    """The REST snapshot for a feed's kind (None when the kind has none)."""
    target = _VENUES.get(config.kind)
    if target is None:
        return None
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)(config)


# --- helpers for the venue modules -------------------------------------------------------------

def rate_limit_status(status: int, headers: Any, default: float = 60.0) -> RestError | None:
    """A 429 or 418 as a RestError with the pause the venue asks for (Retry-After, in seconds)."""
    if status not in (429, 418):
        return None
    return RestError("rate_limited", f"HTTP {status}" + (" (IP banned for hammering)" if status == 418 else ""),
                     retry_after(headers, default))


def json_body(status: int, body: bytes) -> Any:
    """The answer's JSON; a RestError when it is not JSON (``decode_error`` on a 2xx, where JSON
    was promised; ``http_error`` otherwise, an error page from a proxy or the venue)."""
    try:
        return json.loads(body)
    except ValueError as exc:
        raise RestError("decode_error" if 200 <= status < 300 else "http_error",
                        f"HTTP {status}, not JSON: {exc}") from None


def retry_after(headers: Any, default: float) -> float:
    raw = headers.get("Retry-After") if headers is not None else None
    try:
        value = float(raw) if raw is not None else default
    except ValueError:
        return default
    return value if math.isfinite(value) and value >= 0 else default


def number(value: Any, what: str) -> float:
    """A price or timestamp from JSON (venues send numbers or decimal strings); RestError otherwise."""
    if isinstance(value, bool):
        raise RestError("decode_error", f"{what}: expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise RestError("decode_error", f"{what}: expected a number, got {str(value)[:40]!r}")


def timestamp(value: Any, what: str) -> float:
    """A venue timestamp, kept raw (any Unix unit): integers stay integers (nanoseconds do not
    fit a float exactly), decimal strings are read as numbers."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return number(value, what)
