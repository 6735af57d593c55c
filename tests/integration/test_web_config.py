"""``--web.config.file`` against real TLS clients: a throwaway CA (tests/tlsca.py, the openssl
tool), the exporter's app served on 127.0.0.1 with ``WebAccess``, and raw HTTPS requests whose
negotiated version, cipher, ALPN protocol and server certificate the tests read back."""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
from pathlib import Path

import bcrypt
import pytest
from prometheus_client import CollectorRegistry

from exporter.book import Book
from exporter.config import load_data
from exporter.web.app import create_app, serve
from exporter.web.webaccess import WebAccess, install
from tests.tlsca import CA, Issued
from tests.waiting import async_wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict:
    """One CA, a second (untrusted) one, two server certificates and three client certificates."""
    root = tmp_path_factory.mktemp("pki")
    ca = CA(root / "ca")
    other = CA(root / "other", "untrusted-ca")
    return {
        "ca": ca,
        "server": ca.issue("server", ["IP:127.0.0.1", "IP:::1", "DNS:localhost"]),
        "renewed": ca.issue("renewed", ["IP:127.0.0.1", "IP:::1", "DNS:localhost"]),
        "scraper": ca.issue("scraper", ["DNS:scraper.example", "URI:spiffe://monitoring/prometheus"],
                            usage="clientAuth", key="ec"),
        "intruder": ca.issue("intruder", ["DNS:intruder.example", "IP:10.0.0.9"], usage="clientAuth", key="ec"),
        "stranger": other.issue("stranger", ["DNS:scraper.example"], usage="clientAuth", key="ec"),
    }


def install_files(directory: Path, issued: Issued) -> None:
    """Put a certificate and key at tls.crt / tls.key, each replaced atomically (as a renewal does)."""
    for source, name in ((issued.cert, "tls.crt"), (issued.key, "tls.key")):
        tmp = directory / f".{name}.tmp"
        tmp.write_bytes(source.read_bytes())
        os.replace(tmp, directory / name)


def web_yml(directory: Path, body: str) -> Path:
    path = directory / "web.yml"
    tmp = directory / ".web.yml.tmp"
    tmp.write_text(body)
    os.replace(tmp, path)
    return path


TLS = "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n"


class Server:
    def __init__(self, directory: Path, access: WebAccess, runner, port: int) -> None:
        self.dir, self.access, self.runner, self.port = directory, access, runner, port


@pytest.fixture
async def start(tmp_path, pki, clock):
    """``await start(yaml)`` serves the app with that web config (cert files in tmp_path)."""
    servers: list[Server] = []

    async def starter(body: str, issued: Issued | None = None) -> Server:
        install_files(tmp_path, issued or pki["server"])
        access = WebAccess(str(web_yml(tmp_path, body)))
        config = load_data({"feeds": [{"name": "stocks", "kind": "polygon", "url": "wss://x.invalid",
                                       "symbols": ["AAPL"]}]}, environ={})
        app = create_app(Book(config.feeds, clock.time()), config, clock, CollectorRegistry())
        install(app, access)
        runner, port = await serve(app, "127.0.0.1:0", access.ssl_context)
        servers.append(Server(tmp_path, access, runner, port))
        return servers[-1]

    yield starter
    for server in servers:
        await server.runner.cleanup()


def client_context(pki, cert: str | None = None, **options) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki["ca"].cert))
    if cert is not None:
        context.load_cert_chain(str(pki[cert].cert), str(pki[cert].key))
    for name, value in options.items():
        if name == "ciphers":
            context.set_ciphers(value)
        elif name == "curve":
            context.set_ecdh_curve(value)
        elif name == "alpn":
            context.set_alpn_protocols(value)
        else:
            setattr(context, name, value)
    return context


class Reply:
    def __init__(self, status: int, headers: dict[str, str], body: bytes, tls: ssl.SSLObject) -> None:
        self.status, self.headers, self.body = status, headers, body
        self.version = tls.version()
        self.cipher = tls.cipher()[0]
        self.alpn = tls.selected_alpn_protocol()
        self.server_cert = tls.getpeercert(binary_form=True)


async def https_get(port: int, context: ssl.SSLContext, path: str = "/metrics",
                    headers: dict[str, str] | None = None, host: str = "127.0.0.1") -> Reply:
    """One HTTP/1.1 request over a new TLS connection; raises ssl.SSLError / ConnectionError when refused."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=context), 20)
    try:
        lines = [f"GET {path} HTTP/1.1", "Host: feedwatch", "Connection: close",
                 *(f"{k}: {v}" for k, v in (headers or {}).items())]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        raw = await asyncio.wait_for(reader.read(), 20)
        if not raw:
            raise ConnectionError("the server closed the connection without an answer")
        head, _, body = raw.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode().split("\r\n")
        parsed = dict(line.split(": ", 1) for line in header_lines)
        return Reply(int(status_line.split()[1]), parsed, body, writer.get_extra_info("ssl_object"))
    finally:
        writer.close()


REFUSED = (ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def metric(text: bytes, name: str) -> float:
    for line in text.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise KeyError(name)


# --- client certificates ----------------------------------------------------------------------

async def test_client_certificate_required_and_verified(start, pki) -> None:
    server = await start(TLS + f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {pki['ca'].cert}\n")
    assert (await https_get(server.port, client_context(pki, "scraper"))).status == 200
    with pytest.raises(REFUSED):                      # no certificate at all
        await https_get(server.port, client_context(pki))
    with pytest.raises(REFUSED):                      # a certificate from a CA nobody trusts
        await https_get(server.port, client_context(pki, "stranger"))


async def test_client_allowed_sans_are_enforced(start, pki) -> None:
    server = await start(TLS + f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {pki['ca'].cert}\n"
                               "  client_allowed_sans: [spiffe://monitoring/prometheus, 10.0.0.1]\n")
    ok = await https_get(server.port, client_context(pki, "scraper"))
    assert ok.status == 200                           # its URI SAN is on the list
    refused = await https_get(server.port, client_context(pki, "intruder"))
    assert refused.status == 403                      # verified by the CA, but not an allowed SAN
    assert b'feedwatch_http_requests_rejected_total{reason="unauthorized"} 1.0' in (
        await https_get(server.port, client_context(pki, "scraper"))).body
    # The list is re-read: allowing the intruder's IP SAN lets it in, and only it.
    web_yml(server.dir, TLS + f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {pki['ca'].cert}\n"
                              "  client_allowed_sans: [10.0.0.9]\n")
    assert (await https_get(server.port, client_context(pki, "intruder"))).status == 200
    assert (await https_get(server.port, client_context(pki, "scraper"))).status == 403


# --- versions, cipher suites, curves, ALPN ----------------------------------------------------

async def test_min_and_max_version_are_enforced(start, pki) -> None:
    server = await start(TLS + "  min_version: TLS13\n")
    assert (await https_get(server.port, client_context(pki))).version == "TLSv1.3"
    with pytest.raises(REFUSED):
        await https_get(server.port, client_context(pki, maximum_version=ssl.TLSVersion.TLSv1_2))
    await server.runner.cleanup()

    server = await start(TLS + "  max_version: TLS12\n")
    assert (await https_get(server.port, client_context(pki))).version == "TLSv1.2"
    with pytest.raises(REFUSED):
        await https_get(server.port, client_context(pki, minimum_version=ssl.TLSVersion.TLSv1_3))


async def test_cipher_suites_restrict_the_negotiated_cipher(start, pki) -> None:
    server = await start(TLS + "  max_version: TLS12\n  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384]\n")
    # The client would prefer AES-128 first; the server allows only its one suite.
    reply = await https_get(server.port, client_context(
        pki, ciphers="ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384"))
    assert (reply.version, reply.cipher) == ("TLSv1.2", "ECDHE-RSA-AES256-GCM-SHA384")
    with pytest.raises(REFUSED):
        await https_get(server.port, client_context(pki, ciphers="ECDHE-RSA-AES128-GCM-SHA256"))


async def test_curve_preferences_restrict_the_key_exchange(start, pki) -> None:
    server = await start(TLS + "  curve_preferences: [CurveP384]\n")
    assert (await https_get(server.port, client_context(pki, curve="secp384r1"))).status == 200
    with pytest.raises(REFUSED):
        await https_get(server.port, client_context(pki, curve="prime256v1"))


async def test_http2_is_accepted_and_http11_negotiated(start, pki) -> None:
    server = await start(TLS + "http_server_config:\n  http2: true\n")
    reply = await https_get(server.port, client_context(pki, alpn=["h2", "http/1.1"]))
    assert (reply.status, reply.alpn) == (200, "http/1.1")


# --- certificate rotation ---------------------------------------------------------------------

async def test_a_renewed_certificate_is_served_on_new_connections_without_restart(start, pki) -> None:
    server = await start(TLS)
    context = client_context(pki)
    first = await https_get(server.port, context)
    assert first.server_cert == ssl.PEM_cert_to_DER_cert(pki["server"].cert.read_text())
    # A renewal that goes wrong half-way (the new certificate with the old key) changes nothing
    # for clients: the previous pair keeps serving, the failure is visible in the metrics.
    (server.dir / "tls.crt").write_bytes(pki["renewed"].cert.read_bytes())
    broken = await https_get(server.port, context)
    assert broken.server_cert == first.server_cert
    assert metric(broken.body, "feedwatch_web_config_last_reload_successful") == 0
    install_files(server.dir, pki["renewed"])          # the renewal completes
    renewed = await https_get(server.port, context)
    assert renewed.server_cert == ssl.PEM_cert_to_DER_cert(pki["renewed"].cert.read_text())
    assert metric(renewed.body, "feedwatch_web_config_last_reload_successful") == 1


async def test_restart_only_tls_changes_are_refused_and_the_rest_applies_later(start, pki) -> None:
    server = await start(TLS)
    web_yml(server.dir, TLS + "  min_version: TLS13\n")
    reply = await https_get(server.port, client_context(pki, maximum_version=ssl.TLSVersion.TLSv1_2))
    assert reply.version == "TLSv1.2"                 # still the settings the listener started with
    assert metric(reply.body, "feedwatch_web_config_last_reload_successful") == 0
    web_yml(server.dir, TLS + "http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n")
    reply = await https_get(server.port, client_context(pki))
    assert metric(reply.body, "feedwatch_web_config_last_reload_successful") == 1
    assert reply.headers["X-Content-Type-Options"] == "nosniff"


# --- headers, basic auth, rate limit ----------------------------------------------------------

HEADERS = ("http_server_config:\n  headers:\n    X-Frame-Options: deny\n    X-Content-Type-Options: nosniff\n"
           "    Strict-Transport-Security: max-age=31536000\n    Content-Security-Policy: default-src 'self'\n"
           "    X-XSS-Protection: '1; mode=block'\n")


async def test_headers_are_on_every_response_refusals_included(start, pki) -> None:
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    server = await start(TLS + HEADERS + f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    context = client_context(pki)
    for path, auth, status in (("/metrics", basic("prometheus", "s3cret"), 200), ("/metrics", {}, 401),
                               ("/nowhere", basic("prometheus", "s3cret"), 404)):
        reply = await https_get(server.port, context, path, auth)
        assert reply.status == status, path
        assert reply.headers["X-Frame-Options"] == "deny"
        assert reply.headers["X-Content-Type-Options"] == "nosniff"
        assert reply.headers["Strict-Transport-Security"] == "max-age=31536000"
        assert reply.headers["Content-Security-Policy"] == "default-src 'self'"
        assert reply.headers["X-XSS-Protection"] == "1; mode=block"


async def test_basic_auth_users_are_re_read(start, pki) -> None:
    old = bcrypt.hashpw(b"old", bcrypt.gensalt(rounds=4)).decode()
    server = await start(TLS + f"basic_auth_users:\n  prometheus: '{old}'\n")
    context = client_context(pki)
    assert (await https_get(server.port, context, headers=basic("prometheus", "old"))).status == 200
    tls_context = server.access._current
    new = bcrypt.hashpw(b"new", bcrypt.gensalt(rounds=4)).decode()
    web_yml(server.dir, TLS + f"basic_auth_users:\n  prometheus: '{new}'\n  grafana: '{new}'\n")
    # The cached success of the old password does not outlive its hash.
    assert (await https_get(server.port, context, headers=basic("prometheus", "old"))).status == 401
    # New users alone keep the TLS context (and the TLS session cache of the clients in it).
    assert server.access._current is tls_context
    assert (await https_get(server.port, context, headers=basic("prometheus", "new"))).status == 200
    assert (await https_get(server.port, context, headers=basic("grafana", "new"))).status == 200


async def test_rate_limit_answers_429_beyond_the_burst(start, pki) -> None:
    server = await start(TLS + "rate_limit:\n  burst: 2\n  interval: 1h\n")
    context = client_context(pki)
    statuses = [(await https_get(server.port, context, "/-/healthy")).status for _ in range(3)]
    assert statuses == [200, 200, 429]


async def test_an_invalid_file_at_run_time_keeps_the_last_good_one(start, pki) -> None:
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
    server = await start(TLS + f"basic_auth_users:\n  ops: '{hashed}'\n")
    context = client_context(pki)
    web_yml(server.dir, TLS + "basic_auth_users:\n  ops: plain-text\nextra: 1\n")
    reply = await async_wait_for(lambda: https_get(server.port, context, headers=basic("ops", "pw")),
                                 what="a response")
    assert reply.status == 200                        # still the previous users
    assert metric(reply.body, "feedwatch_web_config_last_reload_successful") == 0
    assert (await https_get(server.port, context)).status == 401
