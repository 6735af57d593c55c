"""The trading: section: defaults, per-account overrides, secrets from files, errors with paths."""

from __future__ import annotations

import pytest

from exporter.config import ConfigError, load_data, load_text

FEEDS = [
    {"name": "binance", "kind": "polygon", "url": "ws://127.0.0.1:1", "symbols": ["BTCUSDT", "ETHUSDT"]},
    {"name": "bot", "kind": "trading", "url": "ws://127.0.0.1:2"},
]


def errors_of(data: dict, environ: dict | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_data(data, environ or {})
    return caught.value.errors


def test_defaults_and_overrides_resolve_per_account():
    config = load_data({"feeds": FEEDS, "trading": {
        "limits": {"drawdown_daily": 0.04},
        "sharpe": {"risk_free_rate": 0.03},
        "timezone": "UTC",
        "accounts": [
            {"name": "crypto", "symbols": {"BTCUSDT": "binance"}},
            {"name": "stocks", "timezone": "America/New_York", "day_start": "16:00", "week_start": "sunday",
             "limits": {"consecutive_losses": 5}, "sharpe": {"periods_per_year": 252}},
        ]}}, {})
    crypto, stocks = config.trading.rules["crypto"], config.trading.rules["stocks"]
    assert crypto.limits.drawdown_daily == 0.04 and crypto.limits.drawdown_total == 0.20
    assert crypto.limits.consecutive_losses == 10 and crypto.sharpe.periods_per_year == 365
    assert crypto.symbols == {"BTCUSDT": "binance"}
    assert stocks.limits.drawdown_daily == 0.04 and stocks.limits.consecutive_losses == 5
    assert stocks.sharpe.periods_per_year == 252 and stocks.sharpe.risk_free_rate == 0.03
    assert (stocks.timezone, stocks.day_start, stocks.week_start) == ("America/New_York", "16:00", "sunday")
    assert config.trading.dedup_window == 7 * 86400 and config.trading.api.max_skew == 300


def test_every_problem_is_reported_with_its_path():
    errors = errors_of({"feeds": FEEDS, "trading": {
        "timezone": "Mars/Olympus",
        "day_start": "25:00",
        "limits": {"drawdown_daily": 5, "consecutive_losses": 0, "drawdown_wekly": 0.1},
        "sharpe": {"min_returns": 1},
        "accounts": [
            {"name": "a", "symbols": {"BTCUSDT": "nope", "DOGE": "binance", "X": "bot"}},
            {"name": "a"},
            {"name": "bad name"},
            {"nme": "typo"},
        ]}})
    text = "\n".join(errors)
    for expected in (
        "trading.timezone: unknown time zone 'Mars/Olympus'",
        "trading.day_start: expected a time of day as HH:MM",
        "trading.limits.drawdown_daily: a drawdown limit is a ratio in (0, 1]",
        "trading.limits.consecutive_losses: must be at least 1",
        "trading.limits.drawdown_wekly: unknown key (did you mean 'drawdown_weekly'?)",
        "trading.sharpe.min_returns: must be at least 2",
        "trading.accounts[0].symbols.BTCUSDT: unknown feed 'nope'",
        "trading.accounts[0].symbols.DOGE: feed 'binance' does not watch 'DOGE'",
        "trading.accounts[0].symbols.X: feed 'bot' is a trading feed",
        "trading.accounts[1].name: duplicate account 'a' (also trading.accounts[0])",
        "trading.accounts[2].name: 'bad name' is not a valid account name",
        "trading.accounts[3].nme: unknown key",
        "trading.accounts[3].name: required key is missing",
    ):
        assert expected in text, f"missing: {expected}\nin:\n{text}"


def test_accounts_are_required_and_resolved_is_not_a_user_key():
    assert any("trading.accounts: at least one account" in e for e in errors_of({"trading": {}}))
    errors = errors_of({"trading": {"accounts": [{"name": "a", "resolved": {}}]}})
    assert "trading.accounts[0].resolved: unknown key" in errors


def test_secrets_come_from_env_or_files(tmp_path):
    token = tmp_path / "token"
    token.write_text("  s3cret-token\n")
    config = load_data({"trading": {"accounts": [{"name": "a"}],
                                    "api": {"token_file": str(token), "hmac_secret": "${HMAC}", "max_skew": "30s"}}},
                       {"HMAC": "k3y"})
    assert config.trading.api.token == "s3cret-token"
    assert config.trading.api.hmac_secret == "k3y" and config.trading.api.max_skew == 30.0
    assert config.trading.api.enabled
    errors = errors_of({"trading": {"accounts": [{"name": "a"}], "api": {
        "token": "x", "token_file": str(token), "hmac_secret_file": str(tmp_path / "missing")}}})
    assert "trading.api.token_file: give either token or token_file, not both" in errors
    assert any(e.startswith("trading.api.hmac_secret_file: cannot read") for e in errors)
    assert any("HMAC" in e for e in errors_of({"trading": {"accounts": [{"name": "a"}],
                                                          "api": {"hmac_secret": "${HMAC}"}}}))


def test_trading_feed_rules():
    errors = errors_of({"feeds": [{"name": "bot", "kind": "trading", "symbols": ["X"]}],
                        "trading": {"accounts": [{"name": "a"}]}})
    assert any(e.startswith("feeds[0].url: required for trading feeds") for e in errors)
    assert any(e.startswith("feeds[0].symbols: a trading feed carries no symbols") for e in errors)


def test_yaml_document_round_trip():
    config = load_text("""
trading:
  state_file: /tmp/x.sqlite
  dedup_window: 2d
  accounts:
    - name: main
      limits: {drawdown_total: 0.15, api_errors_per_minute: 10}
""", {})
    rules = config.trading.account("main")
    assert rules.limits.drawdown_total == 0.15 and rules.limits.api_errors_per_minute == 10.0
    assert config.trading.state_file == "/tmp/x.sqlite" and config.trading.dedup_window == 2 * 86400
    assert config.trading.account("other") is None


def test_a_trading_feed_needs_the_trading_section():
    errors = errors_of({"feeds": [{"name": "bot", "kind": "trading", "url": "ws://127.0.0.1:2"}]})
    assert any(e.startswith("trading: required when a feed has kind 'trading'") for e in errors)
