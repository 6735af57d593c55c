"""The connection guard: slow and hostile HTTP clients cannot hold the server's connections.

aiohttp parses HTTP well but has no deadline for a request's headers, and accepts connections
until the process runs out of file descriptors; 1,100 half-sent requests were enough to make
real scrapes time out. The guard sits between the listening socket and aiohttp's protocol (it
wraps the protocol factory, so aiohttp's own parsing and handlers are untouched) and knows each
connection's phase:

- ``waiting``: bytes of a request are expected. From the moment a connection opens, or the
  first byte after a keep-alive pause, the request line and headers must be complete within
  ``http.header_timeout``; otherwise the client gets 408 and the connection is closed.
- ``active``: a handler is running (the guard's middleware marks it; its own deadlines, like
  the push API's body timeout, apply there).
- ``idle``: between keep-alive requests; closed after ``http.idle_timeout``.

At most ``http.max_connections`` connections are open. When one more arrives, the connection
that has been idle or waiting longest is closed to make room (a scrape sends its headers at
once, so it always gets a slot from a flood of half-open clients); when every connection is
active, the newcomer gets 503 and is closed. Both are counted in
``feedwatch_http_requests_rejected_total{reason="connection_limit"}``, header timeouts as
``reason="header_timeout"``, and logged at most once a minute per reason (``exporter.throttle``).

``raise_open_files_limit`` lifts the soft ``RLIMIT_NOFILE`` to the hard limit at start, and the
server never lets the guard's cap exceed half of it (the feeds and the state file need theirs).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import socket
from typing import Any, Awaitable, Callable

from aiohttp import web

from exporter.config import HTTPConfig
from exporter.throttle import Throttle

log = logging.getLogger(__name__)

WAITING, ACTIVE, IDLE = "waiting", "active", "idle"
_REFUSED = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nConnection: close\r\n"
            b"Content-Length: 29\r\n\r\ntoo many connections; retry\r\n")
_TIMED_OUT = (b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain\r\nConnection: close\r\n"
              b"Content-Length: 44\r\n\r\nrequest headers not received within timeout\n")
# After a polite close (408, 503) a client that never reads is cut off this much later.
_ABORT_AFTER = 1.0
# Bytes read from a socket at once (asyncio's default for a plain protocol is 256 KiB).
READ_SIZE = 16 * 1024


def _address(peer: Any) -> str:
    """A peer as one log field: ``127.0.0.1:5555``, ``[::1]:5555``."""
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = f"[{peer[0]}]" if ":" in str(peer[0]) else str(peer[0])
        return f"{host}:{peer[1]}"
    return str(peer)


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (capped at 1 M); the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = 1 << 20 if hard == resource.RLIM_INFINITY else min(hard, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open files limit from %d to %d: %s", soft, target, exc)
    return soft


def connection_cap(configured: int) -> int:
    """``http.max_connections``, lowered to half the open files limit if that is smaller."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or configured <= soft // 2:
        return configured
    cap = max(8, soft // 2)
    log.warning("http.max_connections %d lowered to %d: the open files limit is %d (raise it, e.g. "
                "LimitNOFILE= in the systemd unit)", configured, cap, soft)
    return cap


class ConnectionGuard:
    """Phases, deadlines and the cap for every connection of one listening site."""

    def __init__(self, limits: HTTPConfig, max_connections: int,
                 count: Callable[[str], None] = lambda reason: None) -> None:
        self.limits = limits
        self.max_connections = max_connections
        self.count = count
        self.throttle = Throttle(log)
        # Every open connection, least recently made idle/waiting first (the eviction order).
        self._order: dict[_Connection, None] = {}
        self._by_transport: dict[Any, _Connection] = {}

    @property
    def open(self) -> int:
        return len(self._order)

    def phases(self) -> dict[str, int]:
        """How many open connections are waiting, active and idle."""
        counts = dict.fromkeys((WAITING, ACTIVE, IDLE), 0)
        for conn in self._order:
            counts[conn.phase] += 1
        return counts

    def protocol_factory(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """Wrap aiohttp's protocol factory (the runner's ``Server``)."""
        return lambda: _Connection(self, inner)

    @web.middleware
    async def middleware(self, request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        """Outermost middleware: marks the connection active while a handler runs."""
        conn = self._by_transport.get(request.transport)
        if conn is None:
            return await handler(request)
        conn.enter(ACTIVE)
        try:
            return await handler(request)
        finally:
            conn.enter(IDLE)

    # --- bookkeeping the connections call ------------------------------------------------------

    def admit(self, conn: "_Connection", peer: Any) -> bool:
        if len(self._order) >= self.max_connections:
            victim = next((c for c in self._order if c.phase != ACTIVE), None)
            if victim is None:
                self.count("connection_limit")
                self.throttle.warn("connection_limit", "HTTP: refused a connection from %s: all %d connections "
                                   "are busy with requests (http.max_connections)", peer, self.max_connections,
                                   remote=_address(peer), reason="connection_limit")
                return False
            if victim.phase == WAITING:
                self.count("connection_limit")
            self.throttle.warn("evicted", "HTTP: %d connections open (http.max_connections): closed the one "
                               "%s longest (from %s) to make room", self.max_connections, victim.phase, victim.peer,
                               remote=_address(victim.peer), reason="connection_limit")
            victim.drop()
        self._order[conn] = None
        self._by_transport[conn.transport] = conn
        return True

    def moved(self, conn: "_Connection") -> None:
        self._order.pop(conn, None)
        self._order[conn] = None

    def release(self, conn: "_Connection") -> None:
        """Free ``conn``'s slot (at once when the guard closes it, not when the socket is gone)."""
        if conn in self._order:
            del self._order[conn]
            self._by_transport.pop(conn.transport, None)

    def timed_out(self, conn: "_Connection") -> None:
        self.count("header_timeout")
        self.throttle.warn("header_timeout", "HTTP: closed a connection from %s that did not send its request "
                           "headers within %gs (http.header_timeout)", conn.peer, self.limits.header_timeout,
                           remote=_address(conn.peer), reason="header_timeout")


class _Connection(asyncio.BufferedProtocol):
    """aiohttp's protocol for one connection, behind the guard's deadlines.

    A buffered protocol, so the guard chooses how much is read at once: ``READ_SIZE`` into one
    buffer per connection, where asyncio would allocate 256 KiB per read; with hundreds of
    clients uploading at once that difference is most of the server's memory.
    """

    def __init__(self, guard: ConnectionGuard, inner: Callable[[], asyncio.Protocol]) -> None:
        self.guard = guard
        self.inner_factory = inner
        self.inner: asyncio.Protocol | None = None
        self.transport: Any = None
        self.peer: Any = None
        self.phase = WAITING
        self.timer: asyncio.TimerHandle | None = None
        self.closed = False
        self.buffer: memoryview | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.peer = transport.get_extra_info("peername")
        if not self.guard.admit(self, self.peer):
            self._close(_REFUSED)
            return
        self.inner = self.inner_factory()
        self._arm(self.guard.limits.header_timeout)
        self.inner.connection_made(transport)

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.buffer is None:
            self.buffer = memoryview(bytearray(READ_SIZE))
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        assert self.buffer is not None
        if self.inner is None or self.closed:
            return
        if self.phase == IDLE:  # the first byte of the next request: its headers' clock starts
            self.enter(WAITING)
        self.inner.data_received(bytes(self.buffer[:nbytes]))

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        self.closed = True
        self.guard.release(self)
        if self.inner is not None:
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    # --- phases ---------------------------------------------------------------------------

    def enter(self, phase: str) -> None:
        if self.closed:
            return
        self.phase = phase
        self._cancel()
        if phase == WAITING:
            self._arm(self.guard.limits.header_timeout)
        elif phase == IDLE:
            self._arm(self.guard.limits.idle_timeout)
        if phase != ACTIVE:
            self.guard.moved(self)

    def _arm(self, delay: float) -> None:
        self._cancel()
        self.timer = asyncio.get_running_loop().call_later(delay, self._expired)

    def _cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _expired(self) -> None:
        self.timer = None
        if self.closed or self.phase == ACTIVE:
            return
        if self.phase == WAITING:
            self.guard.timed_out(self)
            self._close(_TIMED_OUT)
        else:
            self.drop()

    def drop(self) -> None:
        """Close at once (idle, or evicted for room): nothing is owed to this client."""
        self._close(None)

    def _close(self, answer: bytes | None) -> None:
        self._cancel()
        self.closed = True
        self.guard.release(self)
        transport = self.transport
        if answer is None:
            transport.abort()
            return
        try:
            transport.write(answer)
        except Exception as exc:  # already broken: the refusal or timeout is counted; say why no answer went
            log.debug("could not send %r to %s before closing: %r", answer.split(b"\r\n", 1)[0], self.peer, exc)
        transport.close()
        asyncio.get_running_loop().call_later(_ABORT_AFTER, transport.abort)


class GuardedSite(web.TCPSite):
    """A TCP site whose connections pass through a ``ConnectionGuard``.

    ``host=None`` (a listen address of ``:port`` or ``[::]:port``) listens on every interface,
    IPv4 and IPv6, as Go exporters do (``bind_everywhere``).
    """

    def __init__(self, runner: web.BaseRunner, host: str | None, port: int, guard: ConnectionGuard,
                 **kwargs: Any) -> None:
        super().__init__(runner, host, port, **kwargs)
        self.guard = guard
        self.more_servers: list[asyncio.AbstractServer] = []

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with the runner (stopped on cleanup)
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None
        options: dict[str, Any] = dict(
            ssl=self._ssl_context, backlog=self._backlog,
            # A TLS handshake is part of "sending the request": the same deadline.
            ssl_handshake_timeout=self.guard.limits.header_timeout if self._ssl_context else None)
        factory = self.guard.protocol_factory(server)
        if self._host is None:
            servers = []
            sockets = bind_everywhere(self._port)
            try:
                for sock in sockets:
                    servers.append(await loop.create_server(factory, sock=sock, **options))
            except BaseException:
                for sock in sockets[len(servers):]:
                    sock.close()
                raise
            finally:
                if servers:
                    self._server, self.more_servers = servers[0], servers[1:]
        else:
            self._server = await loop.create_server(factory, self._host, self._port, reuse_address=self._reuse_address,
                                                    reuse_port=self._reuse_port, **options)
        if self._server is not None and self._server.sockets:
            self._bound_port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for extra in self.more_servers:
            extra.close()
        await super().stop()


def bind_everywhere(port: int, attempts: int = 5) -> list[socket.socket]:
    """Bound sockets for ``:port``: one IPv4 and one IPv6 (``IPV6_V6ONLY``, so each family keeps
    its own addresses in logs) on the same port, also when ``port`` is 0 (the IPv6 socket takes
    the port the kernel gave IPv4). A host without IPv6 (no support, or disabled) gets IPv4 alone,
    said once in the log; any other failure (the port is taken) raises.
    """
    for attempt in range(attempts):
        v4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            v4.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            v4.bind(("0.0.0.0", port))
        except BaseException:
            v4.close()
            raise
        bound = v4.getsockname()[1]
        try:
            v6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        except OSError as exc:
            log.info("no IPv6 on this host (%s): listening on IPv4 only", exc.strerror or exc)
            return [v4]
        try:
            v6.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            v6.bind(("::", bound))
            return [v4, v6]
        except OSError as exc:
            v6.close()
            if exc.errno in _NO_IPV6:
                log.info("IPv6 is not available on this host (%s): listening on IPv4 only", exc.strerror or exc)
                return [v4]
            v4.close()
            if exc.errno != errno.EADDRINUSE or port != 0 or attempt == attempts - 1:
                raise
            # Port 0: the port the kernel gave IPv4 is taken for IPv6; ask again.
    raise AssertionError("unreachable")


# bind() errors that mean "no IPv6 here" rather than "this port is taken".
_NO_IPV6 = frozenset({errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT})
