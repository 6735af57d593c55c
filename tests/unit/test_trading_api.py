"""POST /api/v1/events over a real socket: bearer and HMAC auth, replays refused and counted,
all-or-nothing batches, no 500 for any body, credentials before the body, size and time limits,
its own auth under basic auth, and 503 when the state cannot be stored."""

from __future__ import annotations

import asyncio
import base64
import json

import aiohttp
import bcrypt
import pytest

from exporter.book import Book
from exporter.config import load_data
from exporter.web.app import create_app, serve
from exporter.trading.api import SIGNATURE_HEADER, TIMESTAMP_HEADER, TRACKER, sign
from exporter.trading.store import MemoryStore
from exporter.web import webaccess

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


async def test_batches_duplicates_and_limits(server, clock):
    url, _ = server
    auth = {"Authorization": f"Bearer {TOKEN}"}
    now = clock.time()
    status, reply = await post(url, json.dumps([equity(1, now), equity(2, now, 990.0)]).encode(), auth)
    assert (status, reply["accepted"]) == (200, 2)
    status, reply = await post(url, json.dumps(equity(1, now)).encode(), auth)
    assert (status, reply["accepted"], reply["duplicates"]) == (200, 0, 1)  # a duplicate is not an error
    status, reply = await post(url, b"this is not json", auth)
    assert status == 400 and reply["rejected"] == {"malformed": 1} and "nothing was applied" in reply["error"]
    status, reply = await post(url, json.dumps([equity(i, now) for i in range(10, 14)]).encode(), auth)
    assert status == 413 and "max_batch" in reply["error"]
    text = await scrape(url)
    assert 'feedwatch_trading_events_rejected_total{reason="duplicate"} 1' in text
    assert 'feedwatch_trading_events_rejected_total{reason="malformed"} 1' in text
    assert 'feedwatch_trading_events_total{account="main",type="equity"} 2' in text


async def test_a_batch_is_all_or_nothing_and_each_bad_event_is_named_by_index(server, clock):
    """[good, bad timestamp, good] answered 500 after applying the first event (issue 9)."""
    url, app = server
    auth = {"Authorization": f"Bearer {TOKEN}"}
    now = clock.time()
    batch = [equity(1, now), equity(2, "9999-12-31T23:59:59-23:59"),
             {"type": "warp", "account": "main", "id": "w", "ts": now}]
    status, reply = await post(url, json.dumps(batch).encode(), auth)
    assert status == 400
    assert [(e["index"], e["reason"]) for e in reply["errors"]] == [(1, "future"), (2, "unknown_type")]
    assert reply["error"].startswith("events[1]: future: equity event 'e2'") and "nothing was applied" in reply["error"]
    assert reply["accepted"] == 0 and reply["problems"][1].startswith("events[2]: unknown_type")
    assert app[TRACKER].accounts["main"].equity is None           # the good first event was not applied
    text = await scrape(url)
    assert 'feedwatch_trading_events_total{account="main",type="equity"} 0' in text
    assert 'feedwatch_trading_events_rejected_total{reason="future"} 1' in text
    # The same events, corrected: all three apply, and event e1 was never half-applied before.
    fixed = [equity(1, now), equity(2, now, 950.0), equity(3, now, 960.0)]
    status, reply = await post(url, json.dumps(fixed).encode(), auth)
    assert (status, reply["accepted"], reply["duplicates"]) == (200, 3, 0)
    assert app[TRACKER].accounts["main"].equity == 960.0


BAD_BODIES = {
    "invalid UTF-8 in a string": b'{"type":"equity","account":"\xff","id":1,"ts":1700000000,"equity":1}',
    "an array nested 100,000 deep": b"[" * 100_000,
    "an object nested 5,000 deep": b'{"a":' * 5000 + b"1" + b"}" * 5000,
    "arrays nested 5,000 deep, balanced": b"[" * 5000 + b"]" * 5000,
    "ts 1e300": json.dumps(equity(1, 1e300)).encode(),
    "ts 1e26": json.dumps(equity(1, 1e26)).encode(),
    "ts year 9999 at -23:59": json.dumps(equity(1, "9999-12-31T23:59:59-23:59")).encode(),
    "ts year 1 at +00:01": json.dumps(equity(1, "0001-01-01T00:00:00+00:01")).encode(),
    "a good event then a bad timestamp": json.dumps([equity(5, 1_700_000_000), equity(6, 1e300)]).encode(),
    "null": b"null", "a number": b"1", "an empty body": b"", "a byte-order mark": b"\xef\xbb\xbf{}",
    "an array of arrays": b"[[]]", "no type": b'{"account":"main"}', "type is a number": b'{"type":7}',
    "a huge integer id and no ts": b'{"type":"equity","account":"main","id":' + b"9" * 5000 + b"}",
    "a float limit": b'{"type":"positions","account":"main","id":"p","ts":1700000000,"positions":{},"limit":1e30}',
    "an unterminated string": b'{"type":"equity","account":"ma',
}


@pytest.mark.parametrize("name", list(BAD_BODIES))
async def test_no_body_gets_a_500_and_nothing_is_applied(server, name):
    """Nine of these answered 500 on main (issue 9); every one is a 400 that says why."""
    url, app = server
    status, reply = await post(url, BAD_BODIES[name], {"Authorization": f"Bearer {TOKEN}"})
    assert status == 400, (name, reply)
    assert reply["accepted"] == 0 and reply["errors"] and reply["error"]
    assert app[TRACKER].accounts["main"].equity is None
    assert sum(app[TRACKER].events.values()) == 0


@pytest.mark.parametrize("stamp", ["nan", "NaN", "inf", "-inf", "1e999", "1e9", " 1700000000", "0x10", "", "1_700_000_000"])
async def test_a_signed_request_needs_a_plain_finite_timestamp(server, clock, stamp):
    """A signature over timestamp "nan" skipped the clock-skew check on main."""
    url, app = server
    body = json.dumps(equity(1, clock.time())).encode()
    status, reply = await post(url, body, {TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: sign(SECRET, stamp, body)})
    assert status == 401, reply
    assert app[TRACKER].accounts["main"].equity is None
    assert app[TRACKER].rejected["unauthorized"] == 1


async def raw_exchange(port: int, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """Send ``head`` (and ``body``) on a raw socket, return the status and the response head."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + body)
        await writer.drain()
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        return int(answer.split()[1]), answer
    finally:
        writer.close()


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


async def test_credentials_are_checked_before_the_body_is_read(server, clock):
    """Only the headers of a 1 MiB request are sent: a refusal must come without the body."""
    url, app = server
    port = port_of(url)
    head = "POST /api/v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1048576\r\n"
    assert (await raw_exchange(port, (head + "\r\n").encode()))[0] == 401
    assert (await raw_exchange(port, (head + "Authorization: Bearer wrong\r\n\r\n").encode()))[0] == 401
    stale = str(int(clock.time()) - 3600)
    signed_head = f"{head}{TIMESTAMP_HEADER}: {stale}\r\n{SIGNATURE_HEADER}: sha256={'0' * 64}\r\n\r\n"
    assert (await raw_exchange(port, signed_head.encode()))[0] == 401
    # A client that asks first (curl does for large bodies) is told before it sends anything.
    status, answer = await raw_exchange(port, (head + "Expect: 100-continue\r\n\r\n").encode())
    assert status == 401 and b"100 Continue" not in answer
    assert app[TRACKER].rejected == {**app[TRACKER].rejected, "unauthorized": 3, "replayed": 1}
    text = await scrape(url)
    assert 'feedwatch_http_requests_rejected_total{reason="unauthorized"} 4.0' in text


async def test_a_body_over_max_body_size_is_refused_with_413(clock):
    config = make_config({"token": TOKEN, "max_body_size": 2048})
    app = create_app(Book(config.feeds, clock.time()), config, clock)
    runner, port = await serve(app, "127.0.0.1:0")
    try:
        auth = f"Authorization: Bearer {TOKEN}\r\n"
        head = f"POST /api/v1/events HTTP/1.1\r\nHost: x\r\n{auth}"
        # Declared too large: refused on the headers alone.
        assert (await raw_exchange(port, (head + "Content-Length: 4096\r\n\r\n").encode()))[0] == 413
        # Chunked (no length given): refused once the limit is passed while reading.
        chunk = b"[" + b" " * 3000
        chunked = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n0\r\n\r\n"
        assert (await raw_exchange(port, (head + "Transfer-Encoding: chunked\r\n\r\n").encode(), chunked))[0] == 413
        events = json.dumps([equity(1, clock.time())]).encode()
        status, _ = await post(f"http://127.0.0.1:{port}", events, {"Authorization": f"Bearer {TOKEN}"})
        assert status == 200  # a body within the limit
        text = await scrape(f"http://127.0.0.1:{port}")
        assert 'feedwatch_http_requests_rejected_total{reason="body_too_large"} 2.0' in text
    finally:
        await runner.cleanup()


async def test_a_body_that_never_arrives_gets_408_after_body_timeout(clock):
    config = load_data({"listen": "127.0.0.1:0", "http": {"body_timeout": "300ms"},
                        "trading": {"accounts": [{"name": "main"}], "api": {"token": TOKEN}}}, {})
    app = create_app(Book(config.feeds, clock.time()), config, clock)
    runner, port = await serve(app, "127.0.0.1:0")
    try:
        head = (f"POST /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                "Content-Length: 100\r\n\r\n").encode()
        status, _ = await raw_exchange(port, head, b'[{"type":')
        assert status == 408
        assert 'feedwatch_http_requests_rejected_total{reason="body_timeout"} 1.0' in await scrape(f"http://127.0.0.1:{port}")
    finally:
        await runner.cleanup()


async def test_the_push_api_keeps_its_own_auth_when_basic_auth_guards_the_rest(clock, tmp_path):
    """With --web.config.file basic auth, every push was refused on main, even signed ones."""
    config = make_config({"hmac_secret": SECRET, "max_skew": "30s"})
    app = create_app(Book(config.feeds, clock.time()), config, clock)
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    webaccess.install(app, webaccess.WebAccess(str(web)))
    runner, port = await serve(app, "127.0.0.1:0")
    url = f"http://127.0.0.1:{port}"
    try:
        body = json.dumps(equity(1, clock.time())).encode()
        status, reply = await post(url, body, signed(body, clock.time()))
        assert (status, reply["accepted"]) == (200, 1)
        status, reply = await post(url, body + b" ", signed(body + b" ", clock.time(), secret="wrong"))
        assert status == 401 and reply["error"] == "invalid signature"  # the push API's own refusal
        async with aiohttp.ClientSession() as session:
            async with session.get(url + "/metrics") as response:
                assert response.status == 401                       # the rest still needs the password
            password = {"Authorization": "Basic " + base64.b64encode(b"prometheus:s3cret").decode()}
            async with session.get(url + "/metrics", headers=password) as response:
                assert response.status == 200
                assert 'feedwatch_trading_equity{account="main"} 1000.0' in await response.text()
    finally:
        await runner.cleanup()


class FailingCommits(MemoryStore):
    """A store whose disk fills up on demand (the real full disk: tests/integration/test_state_file.py)."""

    full = False

    def commit(self) -> None:
        from exporter.trading.store import StoreError

        if self.full:
            raise StoreError("trading state file /x: COMMIT failed: database or disk is full")
        super().commit()


async def test_a_store_that_cannot_commit_answers_503_and_nothing_counts_twice(clock):
    config = make_config({"token": TOKEN})
    store = FailingCommits()
    app = create_app(Book(config.feeds, clock.time()), config, clock)
    app[TRACKER].store = store
    runner, port = await serve(app, "127.0.0.1:0")
    url, auth = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {TOKEN}"}
    try:
        loss = {"type": "trade", "account": "main", "id": "t1", "ts": clock.time(), "symbol": "X", "side": "long",
                "quantity": 1, "entry_price": 10, "exit_price": 9, "pnl": -1}
        store.full = True
        for _ in range(2):
            async with aiohttp.ClientSession() as session:
                async with session.post(url + "/api/v1/events", json=loss, headers=auth) as response:
                    assert response.status == 503 and response.headers["Retry-After"]
                    assert "disk is full" in (await response.json())["error"]
        tracker = app[TRACKER]
        assert (tracker.accounts["main"].trades["loss"], tracker.accounts["main"].losing_streak) == (0, 0)
        assert tracker.store_errors == 2
        store.full = False
        assert (await post(url, json.dumps(loss).encode(), auth))[1]["accepted"] == 1
        assert (await post(url, json.dumps(loss).encode(), auth))[1]["duplicates"] == 1
        assert tracker.accounts["main"].trades["loss"] == 1 and tracker.accounts["main"].losing_streak == 1
        text = await scrape(url)
        assert 'feedwatch_trading_state_store_errors_total 2' in text
        assert 'feedwatch_trading_events_total{account="main",type="trade"} 1' in text
    finally:
        await runner.cleanup()


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
