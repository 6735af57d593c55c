"""Listen addresses: ``:port`` serves IPv4 and IPv6 (main bound 0.0.0.0 only), with real
connections to 127.0.0.1 and [::1]; a host without IPv6 falls back to IPv4 alone."""

from __future__ import annotations

import errno
import socket

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from exporter.book import Book
from exporter.config import load_data
from exporter.web import guard
from exporter.web.app import create_app, serve


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


IPV6 = has_ipv6_loopback()


@pytest.fixture
def app(clock):
    config = load_data({"feeds": [{"name": "s", "kind": "polygon", "url": "wss://x.invalid", "symbols": ["A"]}]},
                       environ={})
    return create_app(Book(config.feeds, clock.time()), config, clock, CollectorRegistry())


async def answers(host: str, port: int) -> bool:
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://{host}:{port}/-/healthy", timeout=aiohttp.ClientTimeout(total=10)) as resp:
                return resp.status == 200
    except aiohttp.ClientConnectionError:
        return False


@pytest.mark.parametrize("listen", [":0", "[::]:0"])
async def test_every_interface_means_ipv4_and_ipv6_on_one_port(app, listen) -> None:
    runner, port = await serve(app, listen)
    try:
        assert await answers("127.0.0.1", port)
        # This machine has IPv6 loopback (`ip -6 addr show lo`); without it the same listen
        # address serves IPv4 alone (test_a_host_without_ipv6_gets_ipv4_alone).
        assert await answers("[::1]", port) is IPV6
    finally:
        await runner.cleanup()
    assert not await answers("127.0.0.1", port)   # both sockets closed on cleanup
    if IPV6:
        assert not await answers("[::1]", port)


async def test_an_ipv4_address_is_ipv4_only(app) -> None:
    runner, port = await serve(app, "0.0.0.0:0")
    try:
        assert await answers("127.0.0.1", port)
        assert not await answers("[::1]", port)
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("failure", [errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL])
async def test_a_host_without_ipv6_gets_ipv4_alone(app, monkeypatch, failure) -> None:
    """IPv6 is on here, so its absence is simulated where the kernel would report it: creating
    (no IPv6 support) or binding (IPv6 disabled) the IPv6 socket fails with that errno."""
    real = socket.socket

    class NoIPv6(real):
        def __init__(self, family=socket.AF_INET, *args, **kwargs):
            if family == socket.AF_INET6 and failure == errno.EAFNOSUPPORT:
                raise OSError(failure, "Address family not supported by protocol")
            super().__init__(family, *args, **kwargs)

        def bind(self, address):
            if self.family == socket.AF_INET6:
                raise OSError(failure, "Cannot assign requested address")
            return super().bind(address)

    monkeypatch.setattr(guard.socket, "socket", NoIPv6)
    runner, port = await serve(app, ":0")
    try:
        assert await answers("127.0.0.1", port)
        assert not await answers("[::1]", port)
    finally:
        await runner.cleanup()


@pytest.mark.skipif(not IPV6, reason="needs IPv6 loopback to hold an IPv6 port")
async def test_a_port_taken_on_ipv6_fails_loudly(app) -> None:
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as squatter:
        squatter.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        squatter.bind(("::", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(OSError) as exc:
            await serve(app, f":{port}")
        assert exc.value.errno == errno.EADDRINUSE
