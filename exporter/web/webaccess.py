"""The web config at work: re-read while serving, enforced on every connection and request.

exporter-toolkit reads its web config file again for every TLS handshake and every request, so a
renewed certificate, a new password or a changed header applies without a restart. ``WebAccess``
does the same, cheaply: before each handshake and each request it compares the ``stat`` of the
file and of the certificate, key and client CA files it names (a few microseconds) and re-reads
only what changed.

- **Certificates rotate**: the listening ``SSLContext`` keeps a server-name callback, which runs
  early in every handshake (with or without SNI); when the files changed it builds a context with
  the new certificate, key and client CAs and moves the connection onto it. Connections already
  open keep theirs.
- **What a re-read may change**: certificate, key and client CAs (files or inline), their paths,
  ``client_allowed_sans``, ``http_server_config.headers``, ``rate_limit`` and ``basic_auth_users``.
  The other TLS settings (``client_auth_type``, versions, cipher suites, curves, server preference)
  and turning TLS on or off are fixed when the listener starts: a file changing them is refused
  until a restart, like the main configuration's restart-only keys.
- **A bad re-read keeps what works**: an unreadable or invalid file, or a key that does not match
  its certificate (written half-way by a renewal), leaves the previous configuration serving; every
  problem is logged once, and ``feedwatch_web_config_last_reload_successful`` is 0 until a good
  version is read (the FeedwatchConfigReloadFailed alert). The file is retried at its next change.

Per request, in this order (``middleware``): the rate limit (429), the client certificate's SANs
against ``client_allowed_sans`` (403; Go refuses these in the handshake, Python's TLS cannot, so
the connection gets an answer instead), basic auth (401; bcrypt in a worker thread, successes
cached per user, hash and password as exporter-toolkit does, so a changed hash invalidates them);
the configured headers go on every response, refusals included (``on_response_prepare``). Routes
marked ``web.app.own_auth`` (the trading push API, with its own token or HMAC signature) skip basic
auth only. Refusals count in ``feedwatch_http_requests_rejected_total{reason}`` and are logged at
most once a minute per reason.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import ipaddress
import logging
import os
import ssl
import time
from typing import Any, Awaitable, Callable

import bcrypt
from aiohttp import web

from exporter.config import ConfigError
from exporter.throttle import Throttle
from exporter.web.app import RENDERERS, SELF_METRICS
from exporter.web.webconfig import RateLimit, TLSServerConfig, WebConfig, load, server_context

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_DUMMY_HASH = bcrypt.hashpw(b"feedwatch-dummy", bcrypt.gensalt(rounds=10))
# TLS settings a running listener cannot take: its connections copy them when they are made.
RESTART_ONLY_TLS = ("client_auth_type", "min_version", "max_version", "cipher_suites", "curve_preferences",
                    "prefer_server_cipher_suites")


def restart_only(old: WebConfig, new: WebConfig) -> list[str]:
    """The changes between two web configs that only a restart can apply."""
    a, b = old.tls_server_config, new.tls_server_config
    if (a is None) != (b is None):
        return ["tls_server_config: turning TLS on or off takes a restart"]
    if a is None or b is None:
        return []
    return [f"tls_server_config.{key}: changed from {getattr(a, key)!r} to {getattr(b, key)!r}; "
            f"takes a restart (certificates, keys, client CAs and client_allowed_sans apply at once)"
            for key in RESTART_ONLY_TLS if getattr(a, key) != getattr(b, key)]


class WebAccess:
    """One web config file, re-read on change, and its enforcement (see the module docstring)."""

    def __init__(self, path: str, config: WebConfig | None = None, *, now: Callable[[], float] = time.time) -> None:
        self.path = path
        self.config = config if config is not None else load(path)
        self.now = now
        self.successful = True
        self.success_at = now()
        self.users = BasicAuth(self.config.basic_auth_users)
        self.limiter = TokenBucket.of(self.config.rate_limit)
        self.throttle = Throttle(log)
        self.count: Callable[[str], None] = lambda reason: None   # set by install()
        self._listener: ssl.SSLContext | None = None
        self._current: ssl.SSLContext | None = None
        tls = self.config.tls_server_config
        if tls is not None:
            self._listener = self._current = server_context(tls)
            self._listener.sni_callback = self._on_handshake
        self._signature = self._stat()
        self._loaded_tls = self._signature[1:]   # the TLS files the current context was built from

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        """The listening socket's context (None: plain HTTP)."""
        return self._listener

    # --- re-reading ---------------------------------------------------------------------------

    def _stat(self, config: WebConfig | None = None) -> tuple[Any, ...]:
        """What identifies the file and the TLS files it names as they are now (first: the file)."""
        tls = (config or self.config).tls_server_config
        signature = []
        for path in (self.path, *(tls.files() if tls is not None else ())):
            try:
                st = os.stat(path)
                signature.append((path, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
            except OSError as exc:
                signature.append((path, exc.errno))
        return tuple(signature)

    def refresh(self) -> WebConfig:
        """The configuration in force, re-read first if the file or its certificates changed."""
        signature = self._stat()
        if signature != self._signature:
            self._signature = signature
            self._reload()
        return self.config

    def _reload(self) -> None:
        try:
            new = load(self.path)
            problems = restart_only(self.config, new)
            if problems:
                raise ConfigError([f"{self.path}: {p}" for p in problems])
            # New certificates, keys or client CAs (in the file, or in the files it names) mean a
            # new context for new connections; a change of users or headers alone does not.
            tls_changed = new.tls_server_config is not None and (
                new.tls_server_config != self.config.tls_server_config
                or self._stat(new)[1:] != self._loaded_tls)
            context = server_context(new.tls_server_config) if tls_changed else None
        except ConfigError as exc:
            self.successful = False
            log.error("web config %s changed but was not applied (%d problem(s)); the previous one keeps "
                      "serving: %s", self.path, len(exc.errors), "; ".join(exc.errors),
                      extra={"file": self.path, "reason": "invalid"})
            return
        old = self.config
        self.config, self.successful, self.success_at = new, True, self.now()
        self._signature = self._stat()   # the new config may name other files
        if context is not None:
            self._loaded_tls = self._signature[1:]
        if new.basic_auth_users != old.basic_auth_users:
            self.users = BasicAuth(new.basic_auth_users)
        if new.rate_limit != old.rate_limit:
            self.limiter = TokenBucket.of(new.rate_limit)
        if context is not None:
            self._current = context
        log.info("web config %s re-read%s", self.path,
                 ": certificates reloaded for new connections" if context is not None else "",
                 extra={"file": self.path})

    def _on_handshake(self, sslobj: Any, server_name: str | None, context: ssl.SSLContext) -> None:
        """The listener's server-name callback: every new connection gets the current certificate."""
        try:
            self.refresh()
            if self._current is not None and self._current is not context:
                sslobj.context = self._current
        except Exception:  # the handshake goes on with the context it has; never a crash
            log.exception("web config: checking %s for new certificates failed", self.path)
        return None

    def render(self, now: float) -> str:
        """The web config's reload metrics (a renderer of the app)."""
        return (
            "# HELP feedwatch_web_config_last_reload_successful Whether the last re-read of the web config "
            "file (--web.config.file) and its certificates was applied (1) or refused (0).\n"
            "# TYPE feedwatch_web_config_last_reload_successful gauge\n"
            f"feedwatch_web_config_last_reload_successful {1 if self.successful else 0}\n"
            "# HELP feedwatch_web_config_last_reload_success_timestamp_seconds Unix time the web config "
            "in force was read (the start counts as one).\n"
            "# TYPE feedwatch_web_config_last_reload_success_timestamp_seconds gauge\n"
            f"feedwatch_web_config_last_reload_success_timestamp_seconds {float(self.success_at)!r}\n"
        )

    # --- per request --------------------------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        config = self.refresh()
        if self.limiter is not None and not self.limiter.allow(time.monotonic()):
            return self._refuse(request, "rate_limited", 429, "Too Many Requests\n",
                                "HTTP: refused a request from %s: over rate_limit", request.remote)
        tls = config.tls_server_config
        if tls is not None and tls.client_allowed_sans:
            sans = client_sans(request.transport.get_extra_info("peercert") if request.transport else None)
            if not allowed_san(sans, tls.client_allowed_sans):
                return self._refuse(request, "unauthorized", 403, "Forbidden: client certificate not allowed\n",
                                    "HTTP: refused a request from %s: its client certificate's SANs %s match "
                                    "no entry of client_allowed_sans", request.remote, sorted(sans) or "(none)")
        if config.basic_auth_users and not getattr(request.match_info.handler, "feedwatch_own_auth", False):
            if not await self.users.check(request.headers.get("Authorization")):
                return self._refuse(request, "unauthorized", 401, "Unauthorized\n", None,
                                    headers={"WWW-Authenticate": 'Basic realm="feedwatch"'})
        return await handler(request)

    def _refuse(self, request: web.Request, reason: str, status: int, text: str, message: str | None,
                *args: Any, headers: dict[str, str] | None = None) -> web.Response:
        self.count(reason)
        if message is not None:
            self.throttle.warn(reason, message, *args)
        return web.Response(status=status, text=text, headers=headers)

    async def add_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        """``on_response_prepare``: the configured headers, on every response."""
        headers = self.config.http_server_config.headers
        if headers:
            response.headers.update(headers)


def install(app: web.Application, access: WebAccess) -> None:
    """Enforce ``access`` on an app that has not started (serve it with ``access.ssl_context``)."""
    if SELF_METRICS in app:
        access.count = app[SELF_METRICS].reject_http
    app[RENDERERS] = (*app[RENDERERS], access.render)
    app.middlewares.append(access.middleware)
    app.on_response_prepare.append(access.add_headers)


def client_sans(peercert: dict[str, Any] | None) -> set[str]:
    """A verified client certificate's subject alternative names, written as Go writes them
    (DNS names, e-mail addresses, URIs as they are; IP addresses in their short form)."""
    sans: set[str] = set()
    for kind, value in (peercert or {}).get("subjectAltName", ()):
        if kind == "IP Address":
            try:
                value = str(ipaddress.ip_address(value.strip()))
            except ValueError:
                continue
        if kind in ("DNS", "email", "URI", "IP Address"):
            sans.add(value)
    return sans


def allowed_san(sans: set[str], allowed: tuple[str, ...]) -> bool:
    """Exact match, as exporter-toolkit does; an allowed IP address matches in any spelling."""
    for entry in allowed:
        try:
            entry = str(ipaddress.ip_address(entry))
        except ValueError:
            pass
        if entry in sans:
            return True
    return False


class TokenBucket:
    """``rate_limit``: ``burst`` requests at once, one more every ``interval`` (Go's rate.Limiter)."""

    def __init__(self, burst: int, interval: float) -> None:
        self.burst = burst
        self.interval = interval
        self.tokens = float(burst)
        self.at = time.monotonic()

    @classmethod
    def of(cls, limit: RateLimit) -> "TokenBucket | None":
        return cls(limit.burst, limit.interval) if limit.enabled else None

    def allow(self, now: float) -> bool:
        self.tokens = min(float(self.burst), self.tokens + (now - self.at) / self.interval)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class BasicAuth:
    """HTTP basic auth against bcrypt hashes, with a cache of successes.

    A check costs tens of milliseconds, so it runs in a worker thread (scrapes must not stall the
    feeds) and a success is remembered, keyed by user, hash and password, as exporter-toolkit
    does: a scrape every 15 s does not pay bcrypt each time, and a changed hash is checked anew.
    An unknown user is checked against a dummy hash so the time taken does not reveal who exists.
    """

    def __init__(self, users: dict[str, str]) -> None:
        self.users = {user: hashed.encode() for user, hashed in users.items()}
        self._verified: set[bytes] = set()

    @staticmethod
    def _key(user: str, hashed: bytes, password: str) -> bytes:
        return hashlib.sha256(user.encode() + b"\x00" + hashed + b"\x00" + password.encode()).digest()

    async def check(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, sep, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        if not sep:
            return False
        hashed = self.users.get(user)
        if hashed is not None:
            key = self._key(user, hashed, password)
            if any(hmac.compare_digest(key, known) for known in self._verified):
                return True
        ok = await asyncio.to_thread(bcrypt.checkpw, password.encode(), hashed or _DUMMY_HASH)
        if ok and hashed is not None:
            self._verified.add(key)
            return True
        return False
