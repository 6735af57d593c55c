"""POST /api/v1/events over a real socket: bearer and HMAC auth, replays refused and counted, batches."""

from __future__ import annotations

import json

import aiohttp
import pytest

from exporter.book import Book
from exporter.config import load_data
from exporter.web.app import create_app, serve
from exporter.trading.api import SIGNATURE_HEADER, TIMESTAMP_HEADER, TRACKER, sign

TOKEN = "t0ken-for-tests"
SECRET = "hmac-secret-for-tests"


def make_config(api: dict):
    return load_data({"listen": "127.0.0.1:0", "trading": {
        "accounts": [{"name": "main"}], "api": api}}, {})


@pytest.fixture
async def server(clock):
    """(base URL, app) of an exporter with trading and both auth methods, on 127.0.0.1."""
    config = make_config({"token": TOKEN, "hmac_secret": SECRET, "max_skew": "30s", "max_batch": 3})
    app = create_app(Book(config.feeds, clock.time()), config, clock)
    runner, port = await serve(app, "127.0.0.1:0")
    yield f"http://127.0.0.1:{port}", app
    await runner.cleanup()


def equity(i: int, ts: float, value: float = 1000.0) -> dict:
    return {"type": "equity", "account": "main", "id": f"e{i}", "ts": ts, "equity": value}


async def post(url: str, body: bytes, headers: dict) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as session:
        async with session.post(url + "/api/v1/events", data=body,
                                headers={"Content-Type": "application/json", **headers}) as response:
            return response.status, await response.json()


async def scrape(url: str) -> str:
    async with aiohttp.ClientSession() as session:
        async with session.get(url + "/metrics") as response:
            return await response.text()


def signed(body: bytes, stamp: float, secret: str = SECRET) -> dict:
    text = str(int(stamp))
    return {TIMESTAMP_HEADER: text, SIGNATURE_HEADER: sign(secret, text, body)}


async def test_bearer_token_accepts_and_the_tracker_is_shared(server, clock):
    url, app = server
    status, reply = await post(url, json.dumps(equity(1, clock.time())).encode(),
                               {"Authorization": f"Bearer {TOKEN}"})
    assert (status, reply["accepted"]) == (200, 1)
    assert app[TRACKER].accounts["main"].equity == 1000.0
    text = await scrape(url)
    assert 'feedwatch_trading_equity{account="main"} 1000.0' in text
    assert text.count("# TYPE feedwatch_trading_equity gauge") == 1  # the renderer was added once


async def test_missing_or_wrong_credentials_are_refused_and_counted(server, clock):
    url, _ = server
    body = json.dumps(equity(1, clock.time())).encode()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                    signed(body, clock.time(), secret="not-the-secret"),
                    {SIGNATURE_HEADER: "sha256=00", TIMESTAMP_HEADER: "soon"}):
        status, reply = await post(url, body, headers)
        assert status == 401, headers
        assert reply["error"]
    text = await scrape(url)
    assert 'feedwatch_trading_events_rejected_total{reason="unauthorized"} 5' in text
    assert 'feedwatch_trading_events_total{account="main",type="equity"} 0' in text


async def test_hmac_signature_accepts_once_and_refuses_replays(server, clock):
    url, _ = server
    body = json.dumps([equity(1, clock.time()), equity(2, clock.time(), 990.0)]).encode()
    headers = signed(body, clock.time())
    status, reply = await post(url, body, headers)
    assert (status, reply["accepted"]) == (200, 2)
    # The very same request again (a recorded request replayed): refused before it is read.
    status, reply = await post(url, body, headers)
    assert status == 401 and "already used" in reply["error"]
    # A correctly signed request whose timestamp is outside max_skew (30s): refused as a replay.
    late = json.dumps(equity(3, clock.time())).encode()
    status, reply = await post(url, late, signed(late, clock.time() - 31))
    assert status == 401 and "server clock" in reply["error"]
    # A signature over a different body does not match.
    status, _ = await post(url, late + b" ", signed(late, clock.time()))
    assert status == 401
    text = await scrape(url)
    assert 'feedwatch_trading_events_rejected_total{reason="replayed"} 2' in text
    assert 'feedwatch_trading_events_rejected_total{reason="unauthorized"} 1' in text
    assert 'feedwatch_trading_equity{account="main"} 990.0' in text


async def test_batches_bad_events_duplicates_and_limits(server, clock):
    url, _ = server
    auth = {"Authorization": f"Bearer {TOKEN}"}
    now = clock.time()
    batch = [equity(1, now), {"type": "warp", "account": "main", "id": "w", "ts": now},
             {"type": "equity", "account": "main", "id": "bad", "ts": now}]
    status, reply = await post(url, json.dumps(batch).encode(), auth)
    assert status == 200
    assert reply["accepted"] == 1 and reply["rejected"] == {"unknown_type": 1, "malformed": 1}
    assert len(reply["problems"]) == 2
    status, reply = await post(url, json.dumps(equity(1, now)).encode(), auth)
    assert (status, reply["accepted"], reply["duplicates"]) == (200, 0, 1)  # a duplicate is not an error
    status, reply = await post(url, b"this is not json", auth)
    assert status == 400 and reply["rejected"] == {"malformed": 1}
    status, reply = await post(url, json.dumps([equity(i, now) for i in range(10, 14)]).encode(), auth)
    assert status == 413 and "max_batch" in reply["error"]
    text = await scrape(url)
    assert 'feedwatch_trading_events_rejected_total{reason="duplicate"} 1' in text
    assert 'feedwatch_trading_events_rejected_total{reason="malformed"} 2' in text


async def test_without_credentials_configured_everything_is_refused(clock):
    config = make_config({})
    app = create_app(Book(config.feeds, clock.time()), config, clock)
    runner, port = await serve(app, "127.0.0.1:0")
    try:
        status, reply = await post(f"http://127.0.0.1:{port}", json.dumps(equity(1, clock.time())).encode(),
                                   {"Authorization": "Bearer anything"})
        assert status == 401 and "disabled" in reply["error"]
    finally:
        await runner.cleanup()
