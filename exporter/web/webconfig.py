"""``--web.config.file``: TLS and basic auth, in the Prometheus exporter-toolkit format.

The same file an operator already writes for node_exporter works here::

    tls_server_config:
      cert_file: /etc/feedwatch/tls.crt
      key_file: /etc/feedwatch/tls.key
      # client_auth_type: RequireAndVerifyClientCert   # mutual TLS
      # client_ca_file: /etc/feedwatch/clients-ca.crt
      # min_version: TLS12
    basic_auth_users:
      prometheus: $2y$10$...     # bcrypt hash (htpasswd -nBC 10 "" | tr -d ':\\n')
    http_server_config:
      headers:
        X-Frame-Options: deny

Supported keys are exactly these; anything else is an error naming the key (strict, like the
main config). Every path is protected when users are configured, except the routes that
authenticate each request themselves (marked with ``web.app.own_auth``): ``POST /api/v1/events``
takes the trading API's bearer token or HMAC signature, with or without basic auth on the rest. Passwords are checked with
bcrypt in a worker thread (a check costs tens of milliseconds, and scrapes must not stall the
feeds); a successful (user, password) pair is cached, as exporter-toolkit does, so a scrape
every 15 s does not pay bcrypt each time. An unknown user is checked against a dummy hash so
response time does not reveal which users exist.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import os
import ssl
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Literal

import bcrypt
import yaml
from aiohttp import web

from exporter.config import ConfigError, build_dataclass
from exporter.web.app import SELF_METRICS

ClientAuth = Literal["NoClientCert", "RequestClientCert", "RequireAnyClientCert",
                     "VerifyClientCertIfGiven", "RequireAndVerifyClientCert"]
_DUMMY_HASH = bcrypt.hashpw(b"feedwatch-dummy", bcrypt.gensalt(rounds=10))


@dataclass(frozen=True)
class TLSServerConfig:
    cert_file: str
    key_file: str
    client_auth_type: ClientAuth = "NoClientCert"
    client_ca_file: str | None = None
    min_version: Literal["TLS10", "TLS11", "TLS12", "TLS13"] = "TLS12"
    max_version: Literal["TLS10", "TLS11", "TLS12", "TLS13"] = "TLS13"


@dataclass(frozen=True)
class HTTPServerConfig:
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WebConfig:
    tls_server_config: TLSServerConfig | None = None
    basic_auth_users: dict[str, str] = field(default_factory=dict)
    http_server_config: HTTPServerConfig = HTTPServerConfig()


def load(path: str) -> WebConfig:
    """Read and check a web config file; raises ConfigError listing every problem."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
    except OSError as exc:
        raise ConfigError([f"{path}: {exc.strerror or exc}"]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: invalid YAML: {exc}"]) from exc
    errors: list[str] = []
    config = build_dataclass(WebConfig, data, "", errors, os.environ)
    if config is not None:
        for user, hashed in config.basic_auth_users.items():
            if not isinstance(hashed, str) or not hashed.startswith(("$2a$", "$2b$", "$2y$")):
                errors.append(f"basic_auth_users.{user}: expected a bcrypt hash ($2y$...), not a plain password")
        tls = config.tls_server_config
        if tls is not None:
            for key in ("cert_file", "key_file", "client_ca_file"):
                value = getattr(tls, key)
                if value and not os.path.isfile(value):
                    errors.append(f"tls_server_config.{key}: no such file {value!r}")
            if tls.client_auth_type in ("RequireAndVerifyClientCert", "VerifyClientCertIfGiven") and not tls.client_ca_file:
                errors.append(f"tls_server_config.client_ca_file: required with client_auth_type {tls.client_auth_type}")
    if errors:
        raise ConfigError([f"{path}: {e}" for e in errors])
    return config


_TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
                 "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}


def ssl_context(config: WebConfig) -> ssl.SSLContext | None:
    tls = config.tls_server_config
    if tls is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _TLS_VERSIONS[tls.min_version]
    context.maximum_version = _TLS_VERSIONS[tls.max_version]
    context.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.client_ca_file:
        context.load_verify_locations(tls.client_ca_file)
    context.verify_mode = {
        "NoClientCert": ssl.CERT_NONE,
        "RequestClientCert": ssl.CERT_OPTIONAL,
        "RequireAnyClientCert": ssl.CERT_REQUIRED,
        "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
        "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
    }[tls.client_auth_type]
    return context


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BasicAuth:
    """aiohttp middleware: HTTP basic auth against bcrypt hashes, with a success cache."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = {user: hashed.encode() for user, hashed in users.items()}
        self._verified: set[bytes] = set()

    def _key(self, user: str, password: str) -> bytes:
        return hashlib.sha256(f"{user}\x00{password}".encode()).digest()

    async def check(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, sep, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        if not sep:
            return False
        key = self._key(user, password)
        if any(hmac.compare_digest(key, known) for known in self._verified):
            return True
        hashed = self.users.get(user)
        ok = await asyncio.to_thread(bcrypt.checkpw, password.encode(), hashed or _DUMMY_HASH)
        if ok and hashed is not None:
            self._verified.add(key)
            return True
        return False

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        # Routes with their own, stronger authentication (the push API's token or HMAC, marked
        # with ``web.app.own_auth``) are not asked for a password they cannot send as well.
        if getattr(request.match_info.handler, "feedwatch_own_auth", False):
            return await handler(request)
        if await self.check(request.headers.get("Authorization")):
            return await handler(request)
        if SELF_METRICS in request.app:
            request.app[SELF_METRICS].reject_http("unauthorized")
        return web.Response(status=401, text="Unauthorized\n",
                            headers={"WWW-Authenticate": 'Basic realm="feedwatch"'})


def apply(app: web.Application, config: WebConfig) -> None:
    """Add the auth and header middlewares to an app that has not started yet."""
    headers = dict(config.http_server_config.headers)
    if headers:
        @web.middleware
        async def add_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
            response = await handler(request)
            response.headers.update(headers)
            return response

        app.middlewares.append(add_headers)
    if config.basic_auth_users:
        app.middlewares.append(BasicAuth(config.basic_auth_users).middleware)
