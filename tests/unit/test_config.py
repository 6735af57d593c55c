"""Configuration: strict keys, typed values, ${ENV} expansion, every error at once with its path."""

from __future__ import annotations

import operator

import pytest

from exporter.config import (
    Config, ConfigError, Thresholds, format_duration, listen_address, load_data, load_file,
    load_text, parse_duration,
)

POLYGON = {"name": "stocks", "kind": "polygon", "url": "wss://socket.polygon.io/stocks", "symbols": ["AAPL"]}


def errors_of(data, environ=None) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_data(data, environ or {})
    return err.value.errors


@pytest.mark.parametrize("text, seconds", [
    ("180s", 180), ("5m", 300), ("1h", 3600), ("1h30m", 5400), ("250ms", 0.25), ("1d", 86400),
    ("2w", 1209600), (90, 90), (1.5, 1.5), ("0s", 0),
])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["5", "5 m", "m5", "1h 30m", "", "-5s", -1, True, "1.5.5s", "5x"])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_format_duration_round_trips():
    for seconds in (180, 300, 3600, 5400, 0.25, 45):
        assert parse_duration(format_duration(seconds)) == seconds


def test_defaults_live_in_one_place():
    config = load_data({"feeds": [POLYGON]}, {})
    assert config.listen == ":10119" and config.telemetry_path == "/metrics"
    assert config.thresholds == Thresholds(180, 300, 3600)
    feed = config.feeds[0]
    assert feed.heartbeat_timeout == 25 and feed.ping_interval == 10 and feed.silence_timeout == 600
    assert feed.unhealthy_after_errors == 10 and feed.unhealthy_after_silence == 300
    assert feed.options.channels == ("T", "Q")
    assert feed.resolved_thresholds == Thresholds(180, 300, 3600)


def test_empty_file_is_a_valid_config():
    assert load_text("") == Config()


def test_design_example_loads():
    text = """
listen: ":10119"
thresholds: {degraded: 180s, stale: 300s, critical: 1h}
feeds:
  - name: stocks
    kind: polygon
    url: wss://socket.polygon.io/stocks
    api_key: ${POLYGON_API_KEY}
    channels: [T, Q]
    symbols: [AAPL, MSFT, PMN]
    market: us-equities
    symbol_thresholds: {PMN: {stale: 15m}}
watchlist: {trigger_dir: triggers, ttl: 30m}
"""
    config = load_text(text, {"POLYGON_API_KEY": "k-123"})
    feed = config.feeds[0]
    assert feed.api_key == "k-123" and feed.market == "us-equities"
    assert feed.thresholds_for("PMN") == Thresholds(180, 900, 3600)
    assert feed.thresholds_for("AAPL") == Thresholds(180, 300, 3600)
    assert config.watchlist.ttl == 1800


def test_env_expansion_with_default_and_missing():
    config = load_data({"listen": "${ADDR:-127.0.0.1:9999}", "feeds": [dict(POLYGON, api_key="${KEY}")]},
                       {"KEY": "abc"})
    assert config.listen == "127.0.0.1:9999" and config.feeds[0].api_key == "abc"
    assert errors_of({"feeds": [dict(POLYGON, api_key="${MISSING_KEY}")]}) == [
        "feeds[0].api_key: environment variable MISSING_KEY is not set"]


def test_symbols_from_a_comma_separated_env_var():
    config = load_data({"feeds": [dict(POLYGON, symbols="${SYMBOLS}")]}, {"SYMBOLS": "AAPL, MSFT,NVDA"})
    assert config.feeds[0].symbols == ("AAPL", "MSFT", "NVDA")


def test_every_error_reported_at_once_with_its_path():
    errors = errors_of({
        "listen": "nope",
        "thresholds": {"degraded": "3q", "stael": "5m"},
        "feeds": [
            {"name": "stocks", "kind": "polygon", "url": "ws://x", "symbols": ["AAPL", "AAPL", ""],
             "heartbeat_timeout": "soon", "chanels": ["T"], "symbol_thresholds": {"MSFT": {"stale": "1m"}}},
            {"name": "stocks", "kind": "polygon", "url": "ws://y"},
            {"name": "x", "kind": "kraken"},
            "just a string",
        ],
        "bogus": True,
    })
    assert errors == [
        "bogus: unknown key (known keys: feeds, http, instruments, journal, listen, markets, max_symbols, recorder, "
        "shard, telemetry_path, thresholds, tick_sink, trading, watchlist)",
        "thresholds.stael: unknown key (did you mean 'stale'?)",
        "thresholds.degraded: invalid duration '3q': use a number with a unit, like 250ms, 180s, 5m, 1h or 1h30m",
        "feeds[0].chanels: unknown key (did you mean 'channels'?)",
        "feeds[0].heartbeat_timeout: invalid duration 'soon': use a number with a unit, like 250ms, 180s, 5m, 1h or 1h30m",
        "feeds[0].symbol_thresholds.MSFT: 'MSFT' is not in feeds[0].symbols",
        "feeds[0].symbols[1]: duplicate symbol 'AAPL'",
        "feeds[0].symbols[2]: empty symbol",
        "feeds[1].name: duplicate feed name 'stocks' (also feeds[0])",
        "feeds[2].kind: unknown feed kind 'kraken' (known kinds: " + _known_kinds() + ")",
        "feeds[3]: expected a mapping, got 'just a string'",
        "listen: expected host:port like ':10119' or '127.0.0.1:10119', got 'nope'",
    ]


def _known_kinds() -> str:
    from exporter.feeds import registry

    return ", ".join(registry.kinds())


def test_unknown_feed_key_hints():
    # Close to a venue key: suggested. Nowhere near anything: the venue's keys are listed.
    # Inside a nested mapping: the nested mapping's own suggestion is kept.
    assert errors_of({"feeds": [dict(POLYGON, chanels=["T"], colour="red")]}) == [
        "feeds[0].chanels: unknown key (did you mean 'channels'?)",
        "feeds[0].colour: unknown key (for kind 'polygon' the venue keys are: channels)",
    ]
    assert errors_of({"feeds": [dict(POLYGON, reconnect={"max_dleay": "1m"})]}) == [
        "feeds[0].reconnect.max_dleay: unknown key (did you mean 'max_delay'?)"]


def test_threshold_order_is_checked_after_inheritance():
    errors = errors_of({"feeds": [dict(POLYGON, thresholds={"stale": "2m"})]})
    assert errors == ["feeds[0].thresholds: thresholds must satisfy 0 < degraded <= stale <= critical "
                      "(got degraded=3m, stale=2m, critical=1h)"]


def test_type_errors_name_the_expected_type():
    errors = errors_of({"feeds": [dict(POLYGON, unhealthy_after_errors="many", first_print_max_deviation=[1],
                                       reconnect={"max_delay": "1m", "multiplier": "fast"})]})
    assert errors == [
        "feeds[0].unhealthy_after_errors: expected an integer, got 'many'",
        "feeds[0].first_print_max_deviation: expected a number, got a list",
        "feeds[0].reconnect.multiplier: expected a number, got 'fast'",
    ]


def test_missing_required_keys():
    assert errors_of({"feeds": [{"url": "ws://x"}]}) == [
        "feeds[0].kind: required key is missing (known kinds: " + _known_kinds() + ")"]
    assert errors_of({"feeds": [{"kind": "polygon", "url": "ws://x"}]}) == ["feeds[0].name: required key is missing"]


def test_unknown_market():
    assert errors_of({"feeds": [dict(POLYGON, market="lse")]}) == [
        "feeds[0].market: unknown market 'lse' (known: always, cme-globex, us-equities, us-equities-extended; "
        "or define it under markets:)"]


LSE = """
markets:
  lse:
    timezone: Europe/London
    sessions:
      - {days: [mon-fri], open: "08:00", close: "16:30"}
    holidays: [2026-12-25, "2026-12-28"]
    early_closes: {2026-12-24: "12:30"}
feeds:
  - {name: london, kind: polygon, url: "ws://127.0.0.1:1", market: lse, symbols: [VOD]}
"""


def test_a_custom_market_is_a_feeds_calendar():
    import datetime as dt
    from zoneinfo import ZoneInfo

    config = load_text(LSE, {})
    cal = config.feeds[0].resolved_calendar
    assert cal.name == "lse" and str(cal.timezone) == "Europe/London"
    london = ZoneInfo("Europe/London")

    def at(*args: int) -> float:
        return dt.datetime(*args, tzinfo=london).timestamp()

    assert cal.is_open(at(2026, 12, 23, 16, 29)) and not cal.is_open(at(2026, 12, 23, 16, 30))
    assert not cal.is_open(at(2026, 12, 23, 7, 59)) and cal.is_open(at(2026, 12, 23, 8, 0))
    assert cal.is_open(at(2026, 12, 24, 12, 29)) and not cal.is_open(at(2026, 12, 24, 12, 30))  # early close
    assert not cal.is_open(at(2026, 12, 25, 12, 0)) and not cal.is_open(at(2026, 12, 28, 12, 0))  # holidays
    assert not cal.is_open(at(2026, 12, 26, 12, 0))  # Saturday
    # The holiday list ends with the last year it names, unless holidays_until says otherwise.
    assert cal.end == dt.date(2026, 12, 31)
    assert load_text(LSE.replace("early_closes:", "holidays_until: 2027-06-30\n    early_closes:"), {}) \
        .feeds[0].resolved_calendar.end == dt.date(2027, 6, 30)


def test_a_session_can_open_the_evening_before():
    import datetime as dt

    config = load_data({"markets": {"ice": {"timezone": "America/New_York", "sessions": [
        {"days": ["mon-fri"], "open": "20:00", "close": "18:00", "opens_day_before": True}]}},
        "feeds": [dict(POLYGON, market="ice")]}, {})
    cal = config.feeds[0].resolved_calendar
    assert cal.open_intervals(dt.date(2026, 3, 1)) == ((1200, 1440),)            # Sunday evening
    assert cal.open_intervals(dt.date(2026, 3, 2)) == ((0, 1080), (1200, 1440))  # Monday
    assert cal.open_intervals(dt.date(2026, 3, 6)) == ((0, 1080),)               # Friday
    assert cal.end is None  # no holidays listed: nothing runs out


def test_custom_market_errors_name_their_paths():
    data = {"markets": {
        "lse": {"timezone": "Europe/Londn", "sessions": [
            {"days": ["mon", "fry"], "open": "16:30", "close": "08:00"},
            {"days": ["sat"], "open": 780, "close": "25:00"},
        ], "holidays": ["2026-13-01"], "early_closes": {"2026-12-24": "noon"}, "bogus": 1},
        "us-equities": {"timezone": "UTC", "sessions": [{"days": ["mon"], "open": "09:00", "close": "10:00"}]},
        "empty": {"timezone": "UTC", "sessions": []},
    }, "feeds": [dict(POLYGON, market="lse")]}
    assert errors_of(data) == [
        "markets.lse.bogus: unknown key (known keys: early_closes, holidays, holidays_until, sessions, timezone)",
        "markets.lse.sessions[1].open: expected a time like \"13:00\" in quotes, got the number 780 "
        "(YAML reads an unquoted 13:00 as a number)",
        "markets.lse.sessions[1].close: expected a time of day like \"09:30\" (00:00 to 24:00), got '25:00'",
        "markets.lse.holidays[0]: expected a date like 2025-12-25, got '2026-13-01'",
        "markets.lse.early_closes.2026-12-24: expected a time of day like \"09:30\" (00:00 to 24:00), got 'noon'",
        "markets.lse.timezone: unknown timezone 'Europe/Londn' (did you mean 'Europe/London'?)",
        "markets.lse.sessions[0].days[1]: unknown day 'fry' in 'fry' (use monday..sunday, mon..sun, "
        "or a range like mon-fri)",
        "markets.lse.sessions[0]: open (16:30) must be before close (08:00); a session across midnight "
        "needs opens_day_before: true, or two sessions",
        "markets.us-equities: 'us-equities' is a built-in market; give yours another name",
        "markets.empty.sessions: at least one session is required (a market open around the clock needs "
        "no calendar: omit the feed's market)",
        # The feed names a market whose definition failed: unknown, so the feed is not watched on a
        # calendar nobody checked.
        "feeds[0].market: unknown market 'lse' (known: always, cme-globex, us-equities, us-equities-extended; "
        "or define it under markets:)",
    ]


def test_built_in_markets_resolve_to_their_calendars():
    from exporter.markets import calendar

    config = load_data({"feeds": [dict(POLYGON, market="cme-globex"), dict(POLYGON, name="b")]}, {})
    assert config.feeds[0].resolved_calendar is calendar("cme-globex")
    assert config.feeds[1].resolved_calendar is calendar("always")


def test_yaml_syntax_error_names_the_line():
    with pytest.raises(ConfigError) as err:
        load_text("feeds:\n  - name: [unclosed\n", source="f.yml")
    assert err.value.errors[0].startswith("f.yml: line 3")


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_file(str(tmp_path / "nope.yml"))
    assert "No such file or directory" in err.value.errors[0]


def test_config_objects_are_frozen():
    config = load_data({"feeds": [POLYGON]}, {})
    with pytest.raises(Exception):
        config.listen = ":1"  # type: ignore[misc]


@pytest.mark.parametrize("listen, address", [
    (":10119", ("0.0.0.0", 10119)), ("127.0.0.1:0", ("127.0.0.1", 0)), ("[::1]:9000", ("::1", 9000)),
])
def test_listen_address(listen, address):
    assert listen_address(listen) == address


@pytest.mark.parametrize("section, key", [("journal", "dsn"), ("tick_sink", "dsn"), ("watchlist.api", "token"),
                                          ("watchlist.api", "hmac_secret")])
def test_a_value_kept_in_a_file_is_read_and_its_problems_name_the_key(tmp_path, section, key):
    """``<key>_file`` (Docker and Kubernetes secrets): the file's text, stripped, becomes ``<key>``;
    a file that cannot be read or is empty, or both keys at once, is an error naming the key."""
    def data(**values) -> dict:
        inner: dict = values
        for part in reversed(section.split(".")):
            inner = {part: inner}
        return {"feeds": [POLYGON], **inner}

    good, empty, missing = tmp_path / "good", tmp_path / "empty", tmp_path / "missing"
    good.write_text("  host=db dbname=fw \n")
    empty.write_text(" \n")
    name = f"{section}.{key}_file"
    loaded = load_data(data(**{f"{key}_file": str(good)}), {})
    assert getattr(operator.attrgetter(section)(loaded), key) == "host=db dbname=fw"
    assert errors_of(data(**{key: "inline", f"{key}_file": str(good)})) == [
        f"{name}: give either {key} or {key}_file, not both"]
    assert errors_of(data(**{f"{key}_file": str(missing)})) == [
        f"{name}: cannot read {missing}: No such file or directory"]
    assert errors_of(data(**{f"{key}_file": str(empty)})) == [f"{name}: {empty} is empty"]


def test_the_clickhouse_password_file_is_checked_when_the_config_is_loaded(tmp_path):
    missing, empty = tmp_path / "missing", tmp_path / "empty"
    empty.write_text("\n")
    base = {"feeds": [POLYGON]}
    assert errors_of({**base, "tick_sink": {"sink": "clickhouse", "password_file": str(missing)}}) == [
        f"tick_sink.password_file: cannot read {missing}: No such file or directory"]
    assert errors_of({**base, "tick_sink": {"sink": "clickhouse", "password_file": str(empty)}}) == [
        f"tick_sink.password_file: {empty} is empty"]


def _transport_feed(**extra):
    return {"feeds": [{"name": "b", "kind": "binance", "url": "wss://stream.binance.com:9443",
                       "symbols": ["BTCUSDT"], **extra}]}


def test_a_feeds_transport_is_aiohttp_unless_it_says_picows():
    assert load_data(_transport_feed(), {}).feeds[0].transport == "aiohttp"
    assert load_data(_transport_feed(transport="picows"), {}).feeds[0].transport == "picows"
    assert errors_of(_transport_feed(transport="websockets")) == [
        "feeds[0].transport: expected one of 'aiohttp', 'picows', got 'websockets'"]


def test_what_picows_cannot_do_is_refused_at_load_naming_the_key():
    # aiohttp sends credentials given in the URL (basic auth); picows would drop them silently.
    [error] = errors_of(_transport_feed(transport="picows", url="wss://user:secret@venue.example/ws"))
    assert error.startswith("feeds[0].transport: picows does not send credentials given in the URL")
    assert load_data(_transport_feed(url="wss://user:secret@venue.example/ws"), {}).feeds[0].transport == "aiohttp"


def test_picows_where_it_is_not_installed_is_refused_at_load(monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "picows" else find_spec(name, *a))
    [error] = errors_of(_transport_feed(transport="picows"))
    assert error.startswith("feeds[0].transport: picows is not installed (pip install 'feedwatch[picows]')")
